// The live map: the one owner of the Cytoscape instance and its element set.
//
// The server sends a snapshot, then diffs (webapp/maps/consumers.py), for one
// zoom level at a time; this module turns them into Cytoscape elements, and is
// the only one that adds or removes elements. It also hides what the filters
// exclude and highlights search matches. Where new nodes go is layout.js;
// which level is shown, levels.js; the page and its panels, map.js.
//
// Everything that depends on how many elements are drawn (dense styling,
// renderer flags) lives here, so that level-of-detail rendering has one place
// to go. ``shownNodes``/``shownEdges`` hold what the server sent (snapshots
// are diffed against them); the Cytoscape elements are what is drawn. Today
// the two match; a drawn subset must mind that applyDiff adds a node it does
// not find in ``cy`` as new, and an edge only when both its ends are in ``cy``.

import cytoscape from "cytoscape";
import { MAP_STYLE, diffAgainst, edgeData, edgeId, nodeData } from "./graph.js";
import { fitView, positionAdded } from "./layout.js";
import { WHEEL_SENSITIVITY, landingZooms } from "./levels.js";
import { LEVELS, nameMatches, passesFilters } from "./viewstate.js";

// Above this many nodes, edges hide and a cached picture moves while the user
// pans or zooms: bench/map_render.py measured it the fastest here (canvas
// 20 fps, this 25 fps, WebGL 15 fps panning 2,000 containers).
const FAST_VIEWPORT_NODES = 500;
// Above this many nodes the map is drawn without edge labels (see setDense).
const DENSE_NODES = 1000;

function rendererOptions(name) {
  // XXX: Cytoscape's WebGL renderer is experimental (3.31+); kept selectable
  // by ?renderer= for bench/map_render.py, not the default (see BENCHMARKS.md).
  if (name === "webgl") return { renderer: { name: "canvas", webgl: true } };
  if (name === "fast") return { hideEdgesOnViewport: true, textureOnViewport: true };
  return {};
}

export class LiveMap {
  // ``renderer``: "" picks the renderer flags by map size, else as named.
  constructor(container, level, renderer = "") {
    this.cy = cytoscape({
      container,
      style: MAP_STYLE,
      elements: [],
      minZoom: 0.02,
      maxZoom: 6,
      boxSelectionEnabled: false,
      selectionType: "single",
      wheelSensitivity: WHEEL_SENSITIVITY,
      ...rendererOptions(renderer),
    });
    this.renderer = renderer;
    this.level = level;
    this.dense = false;
    this.shownNodes = new Map(); // id -> node as the server sent it
    this.shownEdges = new Map(); // edge id -> edge as the server sent it
    // Where nodes were at each level, so going back finds them where they were.
    this.positions = Object.fromEntries(LEVELS.map((l) => [l, new Map()]));
  }

  // Empty the map for another level, remembering where everything was.
  setLevel(level) {
    this.savePositions();
    this.level = level;
    this.cy.elements().remove();
    this.shownNodes.clear();
    this.shownEdges.clear();
  }

  savePositions() {
    const saved = this.positions[this.level];
    this.cy.nodes().forEach((n) => {
      if (n.isChildless()) saved.set(n.id(), { ...n.position() });
    });
  }

  // Show ``graph`` (node-link JSON) as the whole map: what it lacks goes, what
  // is new comes in. Returns whether the whole map was laid out afresh.
  applySnapshot(graph) {
    this.setDense(((graph && graph.nodes) || []).length > DENSE_NODES);
    const sorted = {
      nodes: [...((graph && graph.nodes) || [])].sort((a, b) => (a.id < b.id ? -1 : 1)),
      links: (graph && graph.links) || [],
    };
    return this.applyDiff(diffAgainst(this.shownNodes, this.shownEdges, sorted));
  }

  // A dense map draws no edge labels (the hover card has them) and does not
  // shorten node labels: measuring thousands of texts for the first frame cost
  // more than a second (bench/map_render.py).
  setDense(dense) {
    if (dense === this.dense) return;
    this.dense = dense;
    const style = this.cy.style();
    if (dense) {
      style.selector("edge").style({
        label: "", "curve-style": "straight", "z-index-compare": "manual", "z-index": 5,
      });
      style.selector("node").style({
        "text-wrap": "none", "text-background-opacity": 0,
        "z-index-compare": "manual", "z-index": 10,
      });
      // Hosts frame their containers as plain nodes drawn underneath: Cytoscape's
      // compound nodes cost about a second on a 2,000-container first frame.
      style.selector("node.frame").style({
        shape: "round-rectangle", width: "data(frameW)", height: "data(frameH)",
        "background-color": "#eef2f7", "background-opacity": 0.7,
        "border-width": 1, "border-color": "#c6d0dc", "text-valign": "top",
        "text-halign": "center", "text-margin-y": -6, "font-size": 15,
        "font-weight": 600, "z-index": 0,
      });
      style.update();
    } else {
      this.cy.style(MAP_STYLE);
    }
  }

  // Renderer flags Cytoscape reads on every frame (see FAST_VIEWPORT_NODES),
  // unless ?renderer= chose them.
  matchRendererToSize() {
    if (this.renderer) return;
    const r = this.cy.renderer();
    const large = this.cy.nodes().length > FAST_VIEWPORT_NODES;
    r.hideEdgesOnViewport = large;
    r.textureOnViewport = large;
  }

  // Apply one diff (graph.js diffAgainst, or the server's) to the elements.
  // Returns whether the whole map was laid out afresh.
  applyDiff(diff) {
    const cy = this.cy;
    const wasEmpty = cy.nodes().empty();
    const addedIds = [];
    cy.batch(() => {
      for (const [source, target] of diff.removed_edges || []) {
        const id = edgeId(source, target);
        cy.getElementById(id).remove();
        this.shownEdges.delete(id);
      }
      for (const id of diff.removed_nodes || []) {
        const node = cy.getElementById(id);
        // Removing a compound node removes its children: keep them.
        if (node.nonempty()) {
          node.children().move({ parent: null });
          node.remove();
        }
        this.shownNodes.delete(id);
      }
      const fresh = [];
      for (const node of [...(diff.added_nodes || []), ...(diff.changed_nodes || [])]) {
        const ele = cy.getElementById(node.id);
        if (ele.nonempty()) {
          ele.data(nodeData(node));
        } else {
          fresh.push(node);
          addedIds.push(node.id);
        }
        this.shownNodes.set(node.id, node);
      }
      // New nodes go in with their parent already set (one add, no moves):
      // moving thousands of nodes into hosts one by one costs seconds.
      const freshIds = new Set(fresh.map((n) => n.id));
      cy.add(
        fresh.map((node) => {
          const data = nodeData(node);
          const want = data.wantParent;
          if (!this.dense && want && want !== node.id && (freshIds.has(want) ||
              cy.getElementById(want).nonempty())) {
            data.parent = want;
          }
          return { group: "nodes", data, position: { x: 0, y: 0 } };
        }),
      );
    });
    this.reparent();
    cy.batch(() => {
      for (const edge of [...(diff.added_edges || []), ...(diff.changed_edges || [])]) {
        const id = edgeId(edge.source, edge.target);
        const ele = cy.getElementById(id);
        if (ele.nonempty()) {
          ele.data(edgeData(edge));
        } else if (
          cy.getElementById(edge.source).nonempty() &&
          cy.getElementById(edge.target).nonempty()
        ) {
          cy.add({ group: "edges", data: edgeData(edge) });
        }
        this.shownEdges.set(id, edge);
      }
    });
    return positionAdded(cy, addedIds, {
      wasEmpty,
      saved: this.positions[this.level],
      dense: this.dense,
    });
  }

  // Put each node under its ``parent`` when that node is shown, else at top level.
  reparent() {
    if (this.dense) return; // dense maps draw hosts as frames, not compounds
    const cy = this.cy;
    cy.nodes().forEach((node) => {
      const want = node.data("wantParent");
      const target =
        want && want !== node.id() && cy.getElementById(want).nonempty() ? want : null;
      const current = node.isChild() ? node.parent().id() : null;
      // Never under itself or one of its own descendants (a malformed graph).
      const cycle = target && node.descendants().some((d) => d.id() === target);
      if (target !== current && !cycle) node.move({ parent: target });
    });
  }

  // Fit ``eles`` (default: the whole map), short of this level's next threshold.
  fit(eles) {
    fitView(this.cy, eles, landingZooms(this.level).high);
  }

  // Hide what the filters exclude (search only highlights). Returns how many
  // nodes are hidden.
  applyFilters(view) {
    const cy = this.cy;
    const containerFilter = Boolean(view.ns || view.project || view.image || view.label);
    const hideIdle = view.hide.includes("idle");
    let hidden = 0;
    cy.batch(() => {
      const visible = new Set();
      // A node by its own (or, for a service, its owner's) facts and edges.
      const passes = (n) => {
        const data = n.data();
        let ok;
        if (data.kind === "service" && n.isChild()) {
          ok = passesFilters({ ...n.parent().data(), kind: "container" }, view);
        } else {
          ok = passesFilters(data, view);
        }
        if (ok && containerFilter && data.kind === "host" && this.level !== "host") {
          ok = false; // a host without containers holds nothing that matches
        }
        if (ok && hideIdle && !n.connectedEdges("[active = 1]").nonempty()) ok = false;
        return ok;
      };
      // Leaves first.
      cy.nodes().forEach((n) => {
        if (!n.isParent() && passes(n)) visible.add(n.id());
      });
      // Compounds: shown while anything inside them is (innermost first), or
      // on their own (a client container's edges start at it, not a service).
      const parents = cy.nodes(":parent").sort((a, b) => b.ancestors().length - a.ancestors().length);
      parents.forEach((p) => {
        const anyChild = p.children().some((c) => visible.has(c.id()));
        const ok = (anyChild || passes(p)) &&
          !(view.hide.includes("external") && p.data("kind") === "external");
        if (ok) visible.add(p.id());
      });
      // Externals and host processes: only next to something still shown.
      if (containerFilter) {
        cy.nodes().forEach((n) => {
          const kind = n.data("kind");
          if ((kind === "external" || kind === "process") && visible.has(n.id())) {
            if (!n.neighborhood("node").some((m) => visible.has(m.id()))) visible.delete(n.id());
          }
        });
      }
      cy.nodes().forEach((n) => {
        const show = visible.has(n.id());
        if (!show) hidden += 1;
        if (show === n.hasClass("hidden")) n.toggleClass("hidden", !show);
      });
    });
    return hidden;
  }

  // Highlight the nodes whose name contains ``query``; returns the matches.
  search(query) {
    const cy = this.cy;
    const matches = [];
    cy.batch(() => {
      cy.nodes().forEach((n) => {
        const hit = Boolean(query) && !n.hasClass("hidden") && nameMatches(n.data(), query);
        n.toggleClass("match", hit);
        if (hit) matches.push({ id: n.id(), name: n.data("name"), kind: n.data("kind") });
      });
      const fade = Boolean(query) && matches.length > 0;
      cy.elements().forEach((e) => {
        const keep = !fade || e.hasClass("match") || (e.isNode() && e.isParent());
        e.toggleClass("faded", !keep);
      });
    });
    return matches;
  }

  // Plain summaries for tests and the console; the page itself never reads them.
  summary() {
    return {
      level: this.level,
      nodes: this.cy.nodes().map((n) => ({
        id: n.id(),
        name: n.data("label"),
        type: n.data("kind"),
        status: n.data("status"),
        parent: n.isChild() ? n.parent().id() : null,
        hidden: n.hasClass("hidden"),
      })),
      edges: this.cy.edges().map((e) => ({
        source: e.source().id(),
        target: e.target().id(),
        connections: e.data("attrs").connections ?? 0,
        failed: e.data("attrs").failed ?? 0,
        connections_per_s: e.data("attrs").connections_per_s ?? 0,
        width: e.data("width"),
      })),
    };
  }
}
