// Portolan's live map: the page's entry point (bundled to static/portolan/map.js).
//
// The server sends a snapshot, then diffs (webapp/maps/consumers.py), for one
// zoom level at a time. Zooming past a threshold (or double-clicking) switches
// level: hosts -> the containers of the host under the pointer -> the services
// of a container. The map keeps every node it already shows where it is and
// places only new nodes, next to their neighbours, so an update never
// reshuffles what you look at. The URL always holds the view (viewstate.js).

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import "./map.css";
import {
  MAP_STYLE,
  diffAgainst,
  edgeData,
  edgeId,
  hostOf,
  nameFromId,
  nodeData,
  nodeKind,
  ownerOf,
} from "./graph.js";
import { TopologySocket } from "./socket.js";
import { Details, SearchResults, StatusBar, Tooltip } from "./ui.js";
import { LEVELS, formatView, nameMatches, parseView, passesFilters } from "./viewstate.js";

// fCoSE keeps compound nodes (hosts around containers) apart, unlike plain CoSE.
cytoscape.use(fcose);

const MAX_FIT_ZOOM = 1.4;
const PLACE_RADII = [140, 200, 280, 380];
const PLACE_ANGLES = 12;
const MIN_GAP = 110; // node plus its label, roughly
// Semantic zoom: a user's zoom past these values switches level. The gap
// between a level's thresholds and where a switch lands is the hysteresis
// that keeps one wheel notch from bouncing between levels.
const FINER_AT = { host: 2.2, container: 2.6 };
const COARSER_AT = { container: 0.45, service: 0.6 };
const LANDING_MARGIN = 1.5;
// The rest of a wheel flick that switched level must not carry on.
const QUIET_AFTER_SWITCH_MS = 500;
// Cytoscape 3.34 zooms a mouse wheel notch by under 3 %; levels are meant to
// be a few notches apart.
const WHEEL_SENSITIVITY = 2.5;
// Above this many nodes the first layout is fCoSE's fast draft (spectral
// placement only): the full force pass costs seconds on a 2,000-node map.
const DRAFT_LAYOUT_NODES = 600;
// Above this many nodes, edges hide and a cached picture moves while the user
// pans or zooms: bench/map_render.py measured it the fastest here (canvas
// 20 fps, this 25 fps, WebGL 15 fps panning 2,000 containers).
const FAST_VIEWPORT_NODES = 500;
// Above this many nodes even fCoSE's draft takes seconds: a grid per host,
// in linear time (bench/map_render.py: first map under 2 s at 2,000).
const GRID_LAYOUT_NODES = 1000;
const GRID_CELL = 110;
// Above this many nodes the map is drawn without edge labels (see setDense).
const DENSE_NODES = 1000;

// The box around leaf nodes: their centres grown by half a node each side, or
// by half a frame for the host frames of dense maps.
function positionBounds(nodes) {
  let x1 = Infinity;
  let y1 = Infinity;
  let x2 = -Infinity;
  let y2 = -Infinity;
  const half = 45;
  nodes.forEach((n) => {
    if (!n.isChildless()) return;
    const p = n.position();
    // A host frame (dense maps) spans its containers.
    const hw = (n.data("frameW") || 0) / 2 || half;
    const hh = (n.data("frameH") || 0) / 2 || half;
    x1 = Math.min(x1, p.x - hw);
    y1 = Math.min(y1, p.y - hh);
    x2 = Math.max(x2, p.x + hw);
    y2 = Math.max(y2, p.y + hh);
  });
  if (x1 === Infinity) return { x1: 0, y1: 0, w: 0, h: 0 };
  return { x1, y1, w: x2 - x1, h: y2 - y1 };
}

function finer(level) {
  return LEVELS[LEVELS.indexOf(level) + 1] || null;
}

function coarser(level) {
  return LEVELS[LEVELS.indexOf(level) - 1] || null;
}

// A small seeded PRNG: fCoSE's random start made repeatable, so that two
// people opening the same link on the same graph get the same picture.
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rendererOptions(name) {
  // XXX: Cytoscape's WebGL renderer is experimental (3.31+); kept selectable
  // by ?renderer= for bench/map_render.py, not the default (see BENCHMARKS.md).
  if (name === "webgl") return { renderer: { name: "canvas", webgl: true } };
  if (name === "fast") return { hideEdgesOnViewport: true, textureOnViewport: true };
  return {};
}

export class LiveMap {
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
    if (!addedIds.length) return false;
    if (wasEmpty) {
      // Back at a level seen before: what was there goes back where it was.
      const saved = this.positions[this.level];
      const known = addedIds.filter((id) => saved.has(id));
      if (!known.length) {
        this.layoutAll();
        return true;
      }
      cy.batch(() => {
        for (const id of known) {
          const node = cy.getElementById(id);
          if (node.isChildless()) node.position(saved.get(id));
        }
      });
      const knownSet = new Set(known);
      this.place(addedIds.filter((id) => !knownSet.has(id)));
      return false;
    }
    this.place(addedIds);
    return false;
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

  layoutAll() {
    const cy = this.cy;
    if (cy.nodes().length > GRID_LAYOUT_NODES) {
      this.layoutGrid();
      return;
    }
    const large = cy.nodes().length > DRAFT_LAYOUT_NODES;
    const random = Math.random;
    Math.random = seeded(cy.nodes().length * 7919 + cy.edges().length);
    try {
      cy.layout({
        name: "fcose",
        quality: large ? "draft" : "proof",
        animate: false,
        randomize: true,
        fit: false,
        padding: 40,
        nodeDimensionsIncludeLabels: !large,
        idealEdgeLength: () => 130,
        nodeRepulsion: () => 6000,
        nestingFactor: 0.3,
        gravity: 0.3,
        numIter: large ? 300 : 2500,
        tile: true,
        packComponents: true,
      }).run();
    } finally {
      Math.random = random;
    }
  }

  // Large maps: each parent's leaves in a square grid, the groups in rows, in
  // id order. Linear time and the same picture for the same graph.
  layoutGrid() {
    const cy = this.cy;
    const groups = new Map();
    const dense = this.dense;
    const frames = new Set();
    cy.nodes().forEach((n) => {
      if (!n.isChildless()) return;
      let key = n.isChild() ? n.parent().id() : "";
      if (dense) {
        const want = n.data("wantParent");
        key = want && want !== n.id() && cy.getElementById(want).nonempty() ? want : "";
        if (key) frames.add(key);
      }
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(n);
    });
    for (const id of frames) {
      // A frame is laid out with its members, not as a member of the top row.
      const top = groups.get("");
      if (top) groups.set("", top.filter((n) => n.id() !== id));
    }
    const keys = [...groups.keys()].filter((k) => groups.get(k).length).sort();
    const perRow = Math.max(1, Math.ceil(Math.sqrt(keys.length)));
    let x = 0;
    let y = 0;
    let rowHeight = 0;
    cy.batch(() => {
      keys.forEach((key, i) => {
        const leaves = groups.get(key).sort((a, b) => (a.id() < b.id() ? -1 : 1));
        const cols = Math.max(1, Math.ceil(Math.sqrt(leaves.length)));
        leaves.forEach((n, k) => {
          n.position({ x: x + (k % cols) * GRID_CELL, y: y + Math.floor(k / cols) * GRID_CELL });
        });
        if (frames.has(key)) {
          const rows = Math.ceil(leaves.length / cols);
          const frame = cy.getElementById(key);
          frame.data({ frameW: cols * GRID_CELL, frameH: rows * GRID_CELL + 20 });
          frame.addClass("frame");
          frame.position({
            x: x + ((cols - 1) * GRID_CELL) / 2,
            y: y + ((rows - 1) * GRID_CELL) / 2 - 10,
          });
        }
        x += (cols + 2) * GRID_CELL;
        rowHeight = Math.max(rowHeight, Math.ceil(leaves.length / cols) * GRID_CELL);
        if ((i + 1) % perRow === 0) {
          x = 0;
          y += rowHeight + 2 * GRID_CELL;
          rowHeight = 0;
        }
      });
    });
  }

  fit(eles) {
    const cy = this.cy;
    // Fit to where the nodes are: Cytoscape's own bounding box computes every
    // style first, over a second on a 2,000-node map.
    const bb = positionBounds((eles || cy.elements()).nodes());
    const pad = 60;
    if (bb.w > 0 && bb.h > 0) {
      const zoom = Math.min(
        (cy.width() - 2 * pad) / bb.w,
        (cy.height() - 2 * pad) / bb.h,
      );
      cy.zoom(Math.max(cy.minZoom(), Math.min(cy.maxZoom(), zoom)));
      cy.pan({
        x: cy.width() / 2 - cy.zoom() * (bb.x1 + bb.w / 2),
        y: cy.height() / 2 - cy.zoom() * (bb.y1 + bb.h / 2),
      });
    } else {
      cy.fit(eles, pad);
    }
    const high = Math.min(MAX_FIT_ZOOM, (FINER_AT[this.level] || Infinity) / LANDING_MARGIN);
    if (cy.zoom() > high) {
      cy.zoom(high);
      if (eles) cy.center(eles);
      else cy.center();
    }
  }

  // New leaves go next to a shown neighbour (by edge, else a sibling in the
  // same host), in the free spot nearest to it; compound parents follow.
  place(ids) {
    const cy = this.cy;
    const fresh = new Set(ids);
    const placed = cy.nodes().filter((n) => n.isChildless() && !fresh.has(n.id()));
    const points = placed.map((n) => ({ ...n.position() }));
    const leaves = ids
      .map((id) => cy.getElementById(id))
      .filter((n) => n.nonempty() && n.isChildless());
    let spill = 0;
    for (const node of leaves) {
      const anchors = this.anchors(node, fresh);
      let origin;
      if (anchors.length) {
        origin = {
          x: anchors.reduce((s, p) => s + p.x, 0) / anchors.length,
          y: anchors.reduce((s, p) => s + p.y, 0) / anchors.length,
        };
      } else {
        const box = points.length
          ? cy.nodes().boundingBox({ includeLabels: false })
          : { x2: 0, y1: 0 };
        origin = { x: box.x2 + 140, y: box.y1 + 60 + 90 * spill };
        spill += 1;
      }
      const position = anchors.length ? freeSpot(origin, points) : origin;
      node.position(position);
      points.push(position);
      fresh.delete(node.id());
    }
  }

  anchors(node, fresh) {
    const shown = (n) => n.isChildless() && !fresh.has(n.id());
    let anchors = node.neighborhood("node").filter(shown);
    if (anchors.empty() && node.isChild()) anchors = node.siblings().filter(shown);
    return anchors.map((n) => ({ ...n.position() }));
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

function freeSpot(origin, points) {
  let best = origin;
  let bestGap = -1;
  for (const radius of PLACE_RADII) {
    for (let i = 0; i < PLACE_ANGLES; i += 1) {
      // Sideways first: labels sit under nodes, so rows read better than columns.
      const angle = (2 * Math.PI * i) / PLACE_ANGLES;
      const p = { x: origin.x + radius * Math.cos(angle), y: origin.y + radius * Math.sin(angle) };
      const gap = points.reduce(
        (g, q) => Math.min(g, Math.hypot(p.x - q.x, p.y - q.y)),
        Infinity,
      );
      if (gap >= MIN_GAP) return p;
      if (gap > bestGap) {
        best = p;
        bestGap = gap;
      }
    }
  }
  return best;
}

// ---------------------------------------------------------------- the page

class MapPage {
  constructor(config) {
    this.config = config;
    const params = new URLSearchParams(window.location.search);
    this.renderer = ["webgl", "fast", "canvas"].includes(params.get("renderer"))
      ? params.get("renderer")
      : "";
    this.view = parseView(window.location.search, config.level);
    this.container = document.getElementById("map");
    this.map = new LiveMap(this.container, this.view.level, this.renderer);
    this.cy = this.map.cy;
    this.status = new StatusBar(document.getElementById("statusbar"));
    this.tooltip = new Tooltip(document.getElementById("tooltip"));
    this.results = new SearchResults(document.getElementById("search-results"), (id) => {
      this.results.hide();
      this.select(id, true);
    });
    this.details = new Details(
      document.getElementById("details"),
      {
        element: (id) => this.cy.getElementById(id),
        nameOf: (id) => this.nameOf(id),
        edgesOf: (ele) => ({
          inbound: ele.incomers("edge").map((e) => e.data("attrs")),
          outbound: ele.outgoers("edge").map((e) => e.data("attrs")),
        }),
        past: () => this.view.at !== null,
      },
      () => this.closeDetails(),
    );
    // The first snapshot at a level restores the URL's viewport or focus.
    this.pendingView = { restore: this.view.zoom !== null, select: this.view.sel };
    this.switching = false;
    this.quietUntil = 0;
    this.pointer = null;
    this.firstDrawMs = null;
    // Milestones of the first map (ms since navigation), for bench/map_render.py.
    this.marks = { firstPart: null, graphIn: null, applied: null, ready: null };
    this.urlTimer = null;
    this.socket = new TopologySocket(config.socketPath, this.view.level, {
      onState: (state, delay) => this.onSocketState(state, delay),
      onMessage: (message) => this.onMessage(message),
    });
  }

  start() {
    this.bindMap();
    this.bindControls();
    this.status.setLevel(this.view.level);
    this.showLevelNav();
    this.syncControls();
    if (this.view.at !== null) this.loadPast(this.view.at);
    else this.socket.connect();
    this.exposeHandle();
  }

  // -------------------------------------------------------------- data in

  onSocketState(state, delay) {
    if (state === "connecting") this.status.setState("connecting", "connecting…");
    else if (state === "open") this.status.setState("open", "connected, waiting for data");
    else if (state === "paused") this.status.setState("past", "viewing the past: live updates paused");
    else {
      const seconds = Math.round((delay || 0) / 100) / 10;
      this.status.setState("closed", `disconnected, retrying in ${seconds} s`);
    }
  }

  onMessage(message) {
    if (message.type === "snapshot" && !this.marks.firstPart) {
      this.marks.firstPart = performance.now();
    }
    if (message.type === "snapshot") {
      if (message.level && message.level !== this.map.level) return;
      const graph = this.joinParts(message);
      if (!graph) return;
      this.applyGraph(graph, true);
      this.status.setState("live", "live");
    } else if (message.type === "diff") {
      // The first nodes after an empty snapshot: the view lands now.
      this.landView(this.map.applyDiff(message));
      this.status.setState("live", "live");
      this.afterData();
    } else if (message.type === "error") {
      this.status.setState("error", `server: ${message.message}`);
    }
  }

  // The URL's view (focus, selection, zoom) lands with the first nodes: an
  // empty map (no collector reported yet) keeps it for them. Otherwise a new
  // layout is fitted.
  landView(laidOut) {
    const pending = this.cy.nodes().nonempty() ? this.pendingView : null;
    if (pending) {
      this.pendingView = null;
      this.arrive(pending, laidOut);
    } else if (laidOut) {
      this.map.fit();
    }
  }

  // A large snapshot comes in parts (nodes first, then links): the whole graph
  // once the last part is in, else null.
  joinParts(message) {
    const parts = Number(message.parts) || 1;
    const part = Number(message.part) || 0;
    const graph = message.graph || {};
    if (parts === 1) return graph;
    if (part === 0) this.partial = { nodes: [], links: [] };
    if (!this.partial) return null;
    this.partial.nodes.push(...(graph.nodes || []));
    this.partial.links.push(...(graph.links || []));
    if (part < parts - 1) return null;
    const whole = this.partial;
    this.partial = null;
    return whole;
  }

  applyGraph(graph, snapshot) {
    if (snapshot && !this.marks.graphIn) this.marks.graphIn = performance.now();
    const laidOut = this.map.applySnapshot(graph);
    if (snapshot && !this.marks.applied) this.marks.applied = performance.now();
    this.landView(laidOut);
    this.afterData();
    if (snapshot && !this.marks.ready) this.marks.ready = performance.now();
    if (snapshot && this.firstDrawMs === null && this.cy.nodes().nonempty()) {
      // Time to the first drawn map, for bench/map_render.py.
      // Cytoscape draws on its next animation frame; the one after it is shown.
      window.requestAnimationFrame(() =>
        window.requestAnimationFrame(() => {
          this.firstDrawMs = performance.now();
        }),
      );
    }
    this.switching = false;
  }

  // Where the view lands after a level's first snapshot.
  arrive(pending, laidOut) {
    const cy = this.cy;
    const focus = this.view.focus ? cy.getElementById(this.view.focus) : cy.collection();
    cy.nodes().removeClass("focus");
    if (focus.nonempty()) focus.addClass("focus");
    if (pending.restore && this.view.zoom !== null) {
      // Read before setting: each viewport change rewrites view.x/y from the
      // current pan (bindMap), so zoom and pan are set in one go.
      const { x, y } = this.view;
      const zoom = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), this.view.zoom));
      if (x !== null && y !== null) {
        cy.viewport({ zoom, pan: { x: cy.width() / 2 - x * zoom, y: cy.height() / 2 - y * zoom } });
      } else {
        cy.zoom(zoom);
      }
    } else if (focus.nonempty()) {
      let eles = focus.union(focus.descendants());
      // A container is small: show who it talks to as well.
      if (focus.data("kind") !== "host") {
        eles = eles.union(eles.neighborhood("node").filter((n) => n.isChildless()));
      }
      this.map.fit(eles);
      const low = (COARSER_AT[this.map.level] || 0) * LANDING_MARGIN;
      if (cy.zoom() < low) {
        cy.zoom(low);
        cy.center(focus);
      }
    } else if (laidOut || pending.fit) {
      this.map.fit();
    }
    if (pending.select) {
      const ele = cy.getElementById(pending.select);
      if (ele.nonempty()) this.select(pending.select, false);
    }
  }

  afterData() {
    if (!this.renderer) {
      // Renderer flags Cytoscape reads on every frame (see FAST_VIEWPORT_NODES).
      const r = this.cy.renderer();
      const large = this.cy.nodes().length > FAST_VIEWPORT_NODES;
      r.hideEdgesOnViewport = large;
      r.textureOnViewport = large;
    }
    const hidden = this.map.applyFilters(this.view);
    this.status.setCounts(this.cy.nodes().length, this.cy.edges().length, hidden);
    this.status.touch();
    if (this.view.q) this.runSearch(false);
    this.fillFilterChoices();
    if (this.details.current !== null) this.details.render();
    this.showCrumbs();
  }

  // -------------------------------------------------------------- levels

  // Show ``level``, focused on node ``focus`` (an id, or "" for everything).
  switchLevel(level, focus = "", { fit = true } = {}) {
    if (!LEVELS.includes(level)) return;
    this.switching = true;
    this.quietUntil = performance.now() + QUIET_AFTER_SWITCH_MS;
    this.tooltip.hide();
    this.closeDetails();
    this.map.setLevel(level);
    this.view.level = level;
    this.view.focus = focus;
    this.view.zoom = null;
    this.view.x = null;
    this.view.y = null;
    this.pendingView = { restore: false, fit, select: "" };
    this.status.setLevel(level);
    this.status.setCounts(0, 0, 0);
    this.showLevelNav();
    this.showCrumbs();
    // The socket follows the new level even while paused (it does not connect
    // then), so going live later resumes this level, not the one left.
    this.socket.setLevel(level);
    if (this.view.at !== null) this.loadPast(this.view.at);
    this.syncUrl();
  }

  // After a wheel or pinch: past a threshold, change level around the pointer.
  checkSemanticZoom(direction) {
    if (this.switching || performance.now() < this.quietUntil) return;
    const level = this.map.level;
    const zoom = this.cy.zoom();
    if (direction > 0 && FINER_AT[level] && zoom >= FINER_AT[level]) {
      const kind = level === "host" ? "host" : "container";
      const target = this.nodeNearPointer(kind);
      this.switchLevel(finer(level), target ? target.id() : "");
    } else if (direction < 0 && COARSER_AT[level] && zoom <= COARSER_AT[level]) {
      this.switchLevel(coarser(level), this.upFocus());
    }
  }

  // The focus one level up: the host of what we looked at.
  upFocus() {
    const focus = this.view.focus;
    if (!focus) return "";
    if (this.map.level === "service") {
      return nodeKind(focus) === "container" ? hostOf(focus) || "" : "";
    }
    return "";
  }

  nodeNearPointer(kind) {
    const cy = this.cy;
    const p = this.pointer || { x: cy.width() / 2, y: cy.height() / 2 };
    let best = null;
    let bestDistance = Infinity;
    cy.nodes(`[kind = "${kind}"]`).forEach((n) => {
      if (n.hasClass("hidden")) return;
      const box = n.renderedBoundingBox({ includeLabels: false });
      // Inside a node's box counts as on it (a host frame is large).
      const dx = Math.max(box.x1 - p.x, 0, p.x - box.x2);
      const dy = Math.max(box.y1 - p.y, 0, p.y - box.y2);
      const d = Math.hypot(dx, dy) + (n.isParent() ? 1 : 0);
      if (d < bestDistance) {
        best = n;
        bestDistance = d;
      }
    });
    return best;
  }

  // Double-click: a host opens into its containers, a container its services.
  openNode(node) {
    const kind = node.data("kind");
    const level = this.map.level;
    if (kind === "host" && level === "host") this.switchLevel("container", node.id());
    else if (kind === "host" && level === "container") {
      this.view.focus = node.id();
      this.cy.nodes().removeClass("focus");
      node.addClass("focus");
      this.map.fit(node.union(node.descendants()));
      this.showCrumbs();
    } else if (kind === "container" && level === "container") this.switchLevel("service", node.id());
    else if (kind === "service") this.select(node.id(), false);
  }

  // -------------------------------------------------------------- time

  async loadPast(at) {
    this.socket.pause();
    this.view.at = at;
    const level = this.map.level;
    this.syncControls();
    this.syncUrl();
    try {
      const url = `/api/graph/?level=${encodeURIComponent(level)}&at=${encodeURIComponent(String(at))}`;
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) {
        this.socket.toLogin();
        return;
      }
      if (!response.ok) {
        this.status.setState("error", `history unavailable (HTTP ${response.status})`);
        return;
      }
      const graph = await response.json();
      if (this.view.at !== at || this.map.level !== level) return; // moved on meanwhile
      this.applyGraph(graph, true);
      this.status.setState("past", `as it was at ${new Date(at * 1000).toLocaleString()} · live updates paused`);
    } catch {
      this.status.setState("error", "history unavailable: the server did not answer");
    }
  }

  goLive() {
    this.view.at = null;
    this.syncControls();
    this.syncUrl();
    // The socket's snapshot is applied against what is shown: kept nodes stay.
    this.socket.resume();
  }

  // -------------------------------------------------------------- selection

  select(id, move) {
    const ele = this.cy.getElementById(id);
    if (ele.empty()) return;
    this.cy.elements().unselect();
    ele.select();
    if (move) {
      this.cy.animate({ center: { eles: ele }, zoom: Math.max(this.cy.zoom(), 0.8) }, { duration: 250 });
    }
    this.details.show(ele);
    this.view.sel = id;
    this.syncUrl();
  }

  closeDetails() {
    this.cy.elements().unselect();
    this.details.hide();
    this.view.sel = "";
    this.syncUrl();
  }

  nameOf(id) {
    const ele = this.cy.getElementById(id);
    return ele.nonempty() ? ele.data("label") : nameFromId(id);
  }

  // -------------------------------------------------------------- events

  bindMap() {
    const cy = this.cy;
    // Cytoscape caches where its container is on the page; the toolbar above
    // it can wrap (long filter values) and move it, so tell it on any change.
    new ResizeObserver(() => cy.resize()).observe(this.container);
    cy.on("mouseover", "node, edge", (event) => {
      const p = event.renderedPosition || { x: 0, y: 0 };
      this.tooltip.show(event.target, p.x, p.y);
    });
    cy.on("mouseout", "node, edge", () => this.tooltip.hide());
    cy.on("viewport", () => {
      this.tooltip.hide();
      const z = cy.zoom();
      const pan = cy.pan();
      this.view.zoom = z;
      this.view.x = (cy.width() / 2 - pan.x) / z;
      this.view.y = (cy.height() / 2 - pan.y) / z;
      this.syncUrl();
    });
    cy.on("tap", (event) => {
      if (event.target === cy) {
        this.closeDetails();
        return;
      }
      this.select(event.target.id(), false);
    });
    cy.on("dbltap", "node", (event) => this.openNode(event.target));
    let direction = 0;
    this.container.addEventListener(
      "wheel",
      (event) => {
        const box = this.container.getBoundingClientRect();
        this.pointer = { x: event.clientX - box.left, y: event.clientY - box.top };
        direction = event.deltaY < 0 ? 1 : -1;
      },
      { capture: true, passive: true },
    );
    cy.on("scrollzoom", () => this.checkSemanticZoom(direction));
    let pinchStart = null;
    cy.on("pinchzoom", () => {
      const z = cy.zoom();
      if (pinchStart !== null) this.checkSemanticZoom(z > pinchStart ? 1 : -1);
      pinchStart = z;
    });
    window.addEventListener("keydown", (event) => {
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
      if (event.key === "f" && !event.ctrlKey && !event.metaKey && !event.altKey) this.map.fit();
      if (event.key === "Escape") this.closeDetails();
    });
  }

  bindControls() {
    const $ = (id) => document.getElementById(id);
    const search = $("search");
    search.addEventListener("input", () => {
      this.view.q = search.value;
      this.runSearch(true);
      this.syncUrl();
    });
    search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        const first = this.runSearch(true)[0];
        if (first) {
          this.results.hide();
          this.select(first.id, true);
        }
      } else if (event.key === "Escape") {
        search.value = "";
        this.view.q = "";
        this.runSearch(true);
        this.syncUrl();
      }
    });
    search.addEventListener("focus", () => this.view.q && this.runSearch(true));
    document.addEventListener("click", (event) => {
      if (!event.target.closest(".search")) this.results.hide();
    });
    for (const key of ["ns", "project", "image"]) {
      $(`filter-${key}`).addEventListener("change", (event) => {
        this.view[key] = event.target.value;
        this.filtersChanged();
      });
    }
    $("filter-label").addEventListener("change", (event) => {
      this.view.label = event.target.value.trim();
      this.filtersChanged();
    });
    for (const option of ["idle", "external"]) {
      $(`hide-${option}`).addEventListener("change", (event) => {
        const hide = new Set(this.view.hide);
        if (event.target.checked) hide.add(option);
        else hide.delete(option);
        this.view.hide = ["idle", "external"].filter((h) => hide.has(h));
        this.filtersChanged();
      });
    }
    $("zoom-in").addEventListener("click", () => this.zoomBy(1.4));
    $("zoom-out").addEventListener("click", () => this.zoomBy(1 / 1.4));
    $("fit").addEventListener("click", () => this.map.fit());
    for (const link of document.querySelectorAll("nav.levels a[data-level]")) {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        const level = link.dataset.level;
        const focus = level === "container" ? hostOf(this.view.focus || "") || "" : "";
        this.switchLevel(level, focus);
      });
    }
    const slider = $("time");
    const timeLabel = $("time-label");
    slider.addEventListener("input", () => {
      const ago = -Number(slider.value);
      timeLabel.textContent = ago ? `${formatAgo(ago)} ago` : "live";
    });
    slider.addEventListener("change", () => {
      const ago = -Number(slider.value);
      if (ago <= 0) this.goLive();
      else this.loadPast(Date.now() / 1000 - ago);
    });
    $("live").addEventListener("click", () => this.goLive());
  }

  zoomBy(factor) {
    const cy = this.cy;
    const level = cy.zoom() * factor;
    this.pointer = { x: cy.width() / 2, y: cy.height() / 2 };
    cy.zoom({ level, renderedPosition: this.pointer });
    this.checkSemanticZoom(factor > 1 ? 1 : -1);
  }

  filtersChanged() {
    const hidden = this.map.applyFilters(this.view);
    this.status.setCounts(this.cy.nodes().length, this.cy.edges().length, hidden);
    if (this.view.q) this.runSearch(false);
    this.syncUrl();
  }

  runSearch(showList) {
    const matches = this.map.search(this.view.q.trim());
    if (showList && this.view.q.trim()) this.results.show(matches);
    else if (!this.view.q.trim()) this.results.hide();
    return matches;
  }

  // The filter menus list the values present on the map (and the chosen one).
  fillFilterChoices() {
    const values = { ns: new Set(), project: new Set(), image: new Set() };
    this.cy.nodes('[kind = "container"]').forEach((n) => {
      if (n.data("namespace")) values.ns.add(n.data("namespace"));
      if (n.data("project")) values.project.add(n.data("project"));
      if (n.data("image")) values.image.add(n.data("image"));
    });
    for (const [key, set] of Object.entries(values)) {
      if (this.view[key]) set.add(this.view[key]);
      const select = document.getElementById(`filter-${key}`);
      const wanted = [...set].sort();
      const have = [...select.options].slice(1).map((o) => o.value);
      if (wanted.join("\u0000") === have.join("\u0000")) continue;
      const first = select.options[0];
      select.replaceChildren(first, ...wanted.map((v) => new Option(v, v)));
      select.value = this.view[key];
    }
  }

  syncControls() {
    const $ = (id) => document.getElementById(id);
    $("search").value = this.view.q;
    $("filter-label").value = this.view.label;
    $("hide-idle").checked = this.view.hide.includes("idle");
    $("hide-external").checked = this.view.hide.includes("external");
    for (const key of ["ns", "project", "image"]) {
      const select = $(`filter-${key}`);
      if (this.view[key] && ![...select.options].some((o) => o.value === this.view[key])) {
        select.append(new Option(this.view[key], this.view[key]));
      }
      select.value = this.view[key];
    }
    const slider = $("time");
    const live = this.view.at === null;
    const ago = live ? 0 : Math.max(0, Math.round(Date.now() / 1000 - this.view.at));
    slider.value = String(-Math.min(ago, Number(-slider.min)));
    $("time-label").textContent = live ? "live" : `${formatAgo(ago)} ago`;
    $("live").disabled = live;
    document.body.dataset.time = live ? "live" : "past";
  }

  showLevelNav() {
    for (const link of document.querySelectorAll("nav.levels a[data-level]")) {
      const current = link.dataset.level === this.map.level;
      link.classList.toggle("current", current);
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  // Hosts › host › container: where the focus is, each step a way back up.
  showCrumbs() {
    const root = document.getElementById("crumbs");
    const focus = this.view.focus;
    const steps = [["Hosts", () => this.switchLevel("host", "")]];
    const host = focus ? hostOf(focus) : null;
    if (host && this.map.level !== "host") {
      steps.push([this.nameOf(host), () => this.switchLevel("container", host)]);
    }
    const container =
      focus && nodeKind(focus) === "container" ? focus : focus && ownerOf(focus);
    if (container && this.map.level === "service") {
      steps.push([this.nameOf(container), () => this.switchLevel("service", container)]);
    }
    const items = steps.map(([name, go], i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name;
      button.disabled = i === steps.length - 1;
      button.addEventListener("click", go);
      return button;
    });
    const hint = document.createElement("span");
    hint.className = "crumb-hint";
    hint.textContent =
      this.map.level === "service"
        ? "zoom out to go back"
        : "zoom in or double-click to open";
    root.replaceChildren(...items, hint);
  }

  syncUrl() {
    window.clearTimeout(this.urlTimer);
    this.urlTimer = window.setTimeout(() => {
      const url = formatView(this.view, { renderer: this.renderer });
      if (url !== window.location.search) window.history.replaceState(null, "", url);
    }, 200);
  }

  // A read-only handle for tests, the benchmark and the console.
  exposeHandle() {
    const page = this;
    const container = this.container;
    window.portolanMap = Object.freeze({
      get level() {
        return page.map.level;
      },
      get marks() {
        return { ...page.marks };
      },
      get firstDrawMs() {
        return page.firstDrawMs;
      },
      renderer: this.renderer || "canvas",
      cy: this.cy,
      summary: () => page.map.summary(),
      nodeNames: () => page.cy.nodes().map((n) => n.data("label")),
      visibleNames: () => page.cy.nodes().filter((n) => !n.hasClass("hidden")).map((n) => n.data("label")),
      edgeCount: () => page.cy.edges().length,
      state: () => document.getElementById("statusbar").dataset.state,
      view: () => ({ ...page.view, hide: [...page.view.hide] }),
      zoom: () => page.cy.zoom(),
      switching: () => page.switching,
      // Where a node (or an edge's midpoint) is drawn, in page coordinates
      // (to point at it).
      pagePosition(id) {
        const ele = page.cy.getElementById(id);
        if (ele.empty()) return null;
        const box = container.getBoundingClientRect();
        const p = ele.isEdge() ? ele.renderedMidpoint() : ele.renderedPosition();
        return { x: box.left + p.x, y: box.top + p.y };
      },
    });
  }
}

function formatAgo(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function start() {
  const config = JSON.parse(document.getElementById("portolan-config").textContent);
  new MapPage(config).start();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
