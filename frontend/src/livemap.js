// The live map: the one owner of the Cytoscape instance and its element set.
//
// The server sends a snapshot, then diffs (webapp/maps/consumers.py), for one
// zoom level at a time; this module turns them into Cytoscape elements, and is
// the only one that adds or removes elements. It also hides what the filters
// exclude and highlights search matches. Where new nodes go is layout.js;
// which level is shown, levels.js; the page and its panels, map.js.
//
// Everything that depends on how many elements are drawn (dense styling,
// renderer flags, level of detail) lives here. ``model`` (fleet.js) holds what
// the server sent, in plain structures (snapshots are diffed against it); the
// Cytoscape elements are what is drawn. A small map draws the whole model. A
// fleet (more than FLEET_NODES nodes at the container level) draws only what
// the viewport shows at its zoom (fleet.js drawList): host or group tiles when
// zoomed out, containers inside the view when zoomed in, redrawn as the view
// moves, without asking the server.

import cytoscape from "cytoscape";
import { FleetModel } from "./fleet.js";
import {
  MAP_STYLE, diffAgainst, edgeData, edgeId, edgeWidth, nodeData, shortNumber, statusColour,
} from "./graph.js";
import { fitBox, fitView, positionAdded } from "./layout.js";
import { WHEEL_SENSITIVITY, landingZooms } from "./levels.js";
import { sumsDifferences } from "./tilesums.js";
import { mergeUpdates } from "./updates.js";
import { LEVELS, nameMatches, passesFilters } from "./viewstate.js";

// Above this many nodes, edges hide and a cached picture moves while the user
// pans or zooms: bench/map_render.py measured it the fastest here (canvas
// 20 fps, this 25 fps, WebGL 15 fps panning 2,000 containers).
const FAST_VIEWPORT_NODES = 500;
// Above this many nodes the map is drawn without edge labels (see setDense).
const DENSE_NODES = 1000;
// Above this many nodes at the container level only the visible part is drawn
// (level of detail, fleet.js); below it the whole map is, with its layouts.
const FLEET_NODES = 1500;
// Zoom a search result lands at when it was not drawn (containers readable).
const REVEAL_ZOOM = 0.8;
// Aggregated edges are drawn far out: wider in model units to stay visible.
const AGGREGATE_WIDTH = { host: 6, group: 30 };
// A diff's restyle of a fleet's tiles waits while the view moves (a pan or
// zoom gesture: viewport events less than GESTURE_IDLE_MS apart), at most
// HOLD_MS: restyling 500 tiles and 800 summed edges took 60-200 ms of the
// main thread a diff, a dropped frame or several in the middle of a gesture.
const GESTURE_IDLE_MS = 250;
const HOLD_MS = 2000;

// ``n`` to two significant figures: what a tile's label says of its traffic,
// so that a diff changes the label (and Cytoscape measures it again) only
// when the figure moves by a few per cent, not at every decimal.
function roughly(n) {
  const x = Number(n) || 0;
  // Below the label's precision (sums moved by diffs keep a rounding residue:
  // -1e-13 would read "-0.00").
  if (Math.abs(x) < 0.005) return 0;
  const step = 10 ** (Math.floor(Math.log10(Math.abs(x))) - 1);
  return Math.round(x / step) * step;
}

// A summed edge's width in quarter steps of edgeWidth's scale (a rate moving
// by a third or so): a diff restyles it only when its width visibly changes.
function aggregateWidth(sum, detail) {
  return (Math.round(edgeWidth(sum) * 4) / 4) * AGGREGATE_WIDTH[detail];
}

// Whether two Cytoscape data objects draw the same: every field but
// ``attrs`` (what the hover card and the details panel read) is equal.
function drawnAlike(shown, next) {
  for (const key of Object.keys(next)) {
    if (key !== "attrs" && shown[key] !== next[key]) return false;
  }
  return true;
}

// Give the object ``shown`` the fields of ``next`` in place: the hover card
// reads figures that are not drawn without the element being restyled.
function refreshAttrs(shown, next) {
  if (!shown || !next || shown === next) return;
  for (const key of Object.keys(shown)) if (!(key in next)) delete shown[key];
  Object.assign(shown, next);
}

// The classes that style a fleet drawing's nodes by kind (fleet.js drawList).
const KIND_CLASSES = ["frame", "tile", "group"];

function drawnClasses(item) {
  return { frame: ["frame"], tile: ["tile"], group: ["tile", "group"] }[item.kind] || [];
}

function rendererOptions(name) {
  // XXX: Cytoscape's WebGL renderer is experimental (3.31+); kept selectable
  // by ?renderer= for bench/map_render.py, not the default (see BENCHMARKS.md).
  if (name === "webgl") return { renderer: { name: "canvas", webgl: true } };
  if (name === "fast") return { hideEdgesOnViewport: true, textureOnViewport: true };
  return {};
}

export class LiveMap {
  // ``renderer``: "" picks the renderer flags by map size, else as named.
  // ``lod``: false draws every element however many (bench/map_fleet.py).
  constructor(container, level, renderer = "", lod = true) {
    this.cy = cytoscape({
      container,
      // One canvas pixel per CSS pixel: a HiDPI screen would otherwise fill
      // (and the fleet map redraw) four times as many.
      pixelRatio: 1,
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
    this.lod = lod;
    this.model = new FleetModel(); // what the server sent
    this.fleet = false; // whether only the visible part is drawn
    this.drawn = null; // {detail, box, zoom} of the last fleet drawing
    this.drawnItems = new Map(); // drawn id -> its drawList item (kind, source)
    // The nodes of a first snapshot drawn before its links came (drawNodes):
    // its whole snapshot brings the same array, with the links.
    this.nodesDrawn = null;
    this.redrawQueued = false;
    // Viewport events come while a gesture lasts; a diff's redraw is held
    // meanwhile (see GESTURE_IDLE_MS): when it was first held, and its timer.
    this.viewportMovedAt = -Infinity;
    this.heldSince = null;
    this.heldTimer = null;
    this.choicesCache = null; // {model: factsVersion, values} of filterChoices
    // Diffs applied, the time they took (ms, with the redraws they caused,
    // held or not) and the longest, for the benchmark.
    this.diffTiming = { applied: 0, ms: 0, longestMs: 0 };
    this.onRedraw = null; // the page re-applies filters and search highlights
    this.cy.on("viewport", () => {
      this.viewportMovedAt = performance.now();
      this.queueRedraw();
    });
    // Where nodes were at each level, so going back finds them where they were.
    this.positions = Object.fromEntries(LEVELS.map((l) => [l, new Map()]));
  }

  // Empty the map for another level, remembering where everything was.
  setLevel(level) {
    if (!this.fleet) this.savePositions();
    this.level = level;
    this.cy.elements().remove();
    this.model.clear();
    this.fleet = false;
    this.drawn = null;
    this.drawnItems.clear();
    this.nodesDrawn = null;
  }

  // What the server sent: nodes and edges by id.
  get shownNodes() {
    return this.model.nodes;
  }

  get shownEdges() {
    return this.model.edges;
  }

  // How many nodes and edges the map holds (drawn or not).
  counts() {
    return { nodes: this.model.nodes.size, edges: this.model.edges.size };
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
    const n = ((graph && graph.nodes) || []).length;
    const nodesDrawn = this.nodesDrawn;
    this.nodesDrawn = null;
    if (nodesDrawn && graph.nodes === nodesDrawn && this.fleet) {
      // The links of the nodes drawn already: edges and traffic join them.
      this.model.fillLinks(graph.links || []);
      this.redraw(true);
      return false;
    }
    this.setDense(n > DENSE_NODES || this.wantsFleet(n));
    if (this.model.nodes.size === 0 && this.wantsFleet(n)) return this.fillFleet(graph);
    const sorted = {
      nodes: [...((graph && graph.nodes) || [])].sort((a, b) => (a.id < b.id ? -1 : 1)),
      links: (graph && graph.links) || [],
    };
    return this.applyDiff(diffAgainst(this.shownNodes, this.shownEdges, sorted));
  }

  // A fleet's first snapshot, its nodes in and its links still coming
  // (socket.js): the tiles with their containers' status are drawn now, as an
  // online map draws its first tiles, and the links join them when they come
  // (applySnapshot). Nothing is drawn for a map not empty or not a fleet.
  // Returns whether the map was laid out afresh.
  drawNodes(graph) {
    const n = ((graph && graph.nodes) || []).length;
    if (this.model.nodes.size !== 0 || !this.wantsFleet(n)) return false;
    this.nodesDrawn = graph.nodes; // before drawing: tiles tell no traffic yet
    return this.fillFleet(graph);
  }

  // A fleet's first snapshot (or its nodes alone: drawNodes) goes into the
  // empty model as it came (diffing 60,000 records against nothing only
  // copies them) and is drawn by level of detail. Returns whether the map
  // was laid out afresh.
  fillFleet(graph) {
    this.setDense(true);
    this.model.fill(graph);
    if (!this.fleet) return this.switchDrawing(true);
    this.redraw(true);
    return false;
  }

  // Whether the map shows a first snapshot's nodes whose links are still coming.
  get awaitingLinks() {
    return this.nodesDrawn !== null;
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
      // Fleet tiles: a host or group of hosts, zoomed out (fleet.js).
      style.selector("node.tile").style({
        shape: "round-rectangle", width: "data(frameW)", height: "data(frameH)",
        "background-color": "data(colour)", "background-opacity": 0.28,
        "border-width": 6, "border-color": "data(colour)", "text-valign": "center",
        "text-halign": "center", "text-margin-y": 0, "text-wrap": "wrap",
        "text-max-width": "data(frameW)", "font-size": "data(fontSize)",
        "font-weight": 600, "min-zoomed-font-size": 5, "z-index": 1,
      });
      style.selector("node.group").style({ "border-width": 30, "background-opacity": 0.18 });
      // Haystack lines: no control points or arrows to compute for
      // hundreds of summed edges (the hover card says which way they go).
      style.selector("edge.aggregate").style({
        "curve-style": "haystack", "haystack-radius": 0, opacity: 0.5, "z-index": 2,
      });
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
    // A fleet draws few but large elements (tiles, summed edges): hidden and
    // cached all the same.
    const large = this.fleet || this.cy.nodes().length > FAST_VIEWPORT_NODES;
    r.hideEdgesOnViewport = large;
    r.textureOnViewport = large;
  }

  // Whether a map of ``n`` nodes at this level is drawn by level of detail.
  wantsFleet(n = this.model.nodes.size) {
    return this.lod && this.level === "container" && n > FLEET_NODES;
  }

  // Apply one diff (graph.js diffAgainst, or the server's) to the model and
  // what is drawn. Returns whether the whole map was laid out afresh.
  applyDiff(serverDiff) {
    const started = performance.now();
    const laidOut = this.applyDiffTo(serverDiff);
    const ms = performance.now() - started;
    const t = this.diffTiming;
    t.applied += 1;
    t.ms += ms;
    t.longestMs = Math.max(t.longestMs, ms);
    return laidOut;
  }

  applyDiffTo(serverDiff) {
    const inPlace = [];
    const diff = mergeUpdates(serverDiff, this.model, inPlace);
    this.refreshDrawnMetrics(inPlace);
    const changed = this.model.applyDiff(diff);
    const fleet = this.wantsFleet();
    if (fleet !== this.fleet) return this.switchDrawing(fleet);
    if (fleet) {
      if (changed) this.redrawAfterGesture();
      return false;
    }
    return this.drawDiff(diff);
  }

  // A drawn element's card reads its ``attrs``, which may be an earlier
  // object of the node than the model's (refreshAttrs): give it the metrics
  // the model's node now has.
  refreshDrawnMetrics(nodes) {
    for (const node of nodes) {
      const ele = this.cy.getElementById(node.id);
      if (ele.empty()) continue;
      const attrs = ele.data("attrs");
      if (attrs && attrs !== node && attrs.id === node.id) attrs.metrics = node.metrics;
    }
  }

  // From drawing everything to drawing by level of detail, or back.
  switchDrawing(fleet) {
    this.cy.elements().remove();
    this.drawnItems.clear();
    this.drawn = null;
    this.fleet = fleet;
    if (fleet) {
      this.setDense(true);
      this.model.layout();
      this.fitModel();
      this.redraw(true);
      return true;
    }
    this.model.laidOut = false;
    return this.drawDiff({
      added_nodes: [...this.model.nodes.values()],
      added_edges: [...this.model.edges.values()],
    });
  }

  // ------------------------------------------------------------ fleet drawing

  // Redraw for a diff (the model changed): now, unless the view is moving;
  // then once it rests, or HOLD_MS after the first diff held, whichever
  // comes first. A diff held meanwhile joins the same redraw.
  redrawAfterGesture() {
    const now = performance.now();
    if (this.heldSince === null) this.heldSince = now;
    const moving = now - this.viewportMovedAt < GESTURE_IDLE_MS;
    if (!moving || now - this.heldSince >= HOLD_MS) {
      this.redrawHeld();
      return;
    }
    if (this.heldTimer === null) {
      this.heldTimer = window.setTimeout(() => {
        this.heldTimer = null;
        if (this.heldSince !== null) this.redrawAfterGesture();
      }, GESTURE_IDLE_MS);
    }
  }

  // The held redraw, its time counted with the diffs' (bench/map_fleet.py).
  redrawHeld() {
    if (!this.fleet) {
      this.heldSince = null;
      return;
    }
    const started = performance.now();
    this.redraw(true);
    this.diffTiming.ms += performance.now() - started;
  }

  // Redraw on the next frame after the view moved (many viewport events
  // come per frame while dragging).
  queueRedraw() {
    if (!this.fleet || this.redrawQueued) return;
    this.redrawQueued = true;
    window.requestAnimationFrame(() => {
      this.redrawQueued = false;
      if (this.fleet) this.redraw(false);
    });
  }

  // Draw what the viewport shows at its zoom. Unless ``force`` (the model
  // changed), nothing happens while the view stays inside the drawn box at
  // the same detail (tiles: everywhere; containers: the margin around the
  // view is the hysteresis).
  redraw(force) {
    if (force && this.heldSince !== null) {
      window.clearTimeout(this.heldTimer); // this draws what was held
      this.heldTimer = null;
      this.heldSince = null;
    }
    const cy = this.cy;
    const zoom = cy.zoom();
    const extent = cy.extent();
    const detail = this.model.detailAt(zoom);
    const last = this.drawn;
    if (!force && last && last.detail === detail &&
        (detail !== "container" || zoom < 2 * last.zoom) &&
        extent.x1 >= last.box.x1 && extent.x2 <= last.box.x2 &&
        extent.y1 >= last.box.y1 && extent.y2 <= last.box.y2) {
      return;
    }
    const box = this.model.drawBox(extent, detail);
    const list = this.model.drawList(detail, box);
    const wanted = new Map();
    for (const item of list.nodes) wanted.set(item.id, item);
    for (const item of list.edges) wanted.set(item.id, item);
    cy.batch(() => {
      cy.elements().filter((e) => !wanted.has(e.id())).remove();
      const fresh = [];
      for (const items of [list.nodes, list.edges]) {
        for (const item of items) {
          const ele = cy.getElementById(item.id);
          if (ele.nonempty()) {
            const shown = this.drawnItems.get(item.id);
            if (!shown || shown.source !== item.source || shown.kind !== item.kind) {
              this.redrawElement(ele, item, detail);
            }
          } else {
            fresh.push(this.drawnElement(item, detail));
          }
        }
        cy.add(fresh.splice(0));
      }
    });
    this.drawnItems = wanted;
    this.drawn = { detail, box, zoom };
    this.matchRendererToSize();
    if (this.onRedraw) this.onRedraw();
  }

  // Bring a drawn element to its model item. Restyling (what makes Cytoscape
  // draw it again) only when something drawn changed: a diff of figures no
  // tile shows (rates below its label's precision, metrics) costs nothing.
  redrawElement(ele, item, detail) {
    // A host is a tile far out and a frame closer in, under one id.
    const classes = drawnClasses(item);
    for (const name of KIND_CLASSES) {
      if (ele.hasClass(name) !== classes.includes(name)) ele.toggleClass(name, classes.includes(name));
    }
    const data = this.drawnData(item, detail);
    const shown = ele.data();
    if (drawnAlike(shown, data)) refreshAttrs(shown.attrs, data.attrs);
    else ele.data(data);
    // A host's frame grows with its containers: its centre moves.
    const want = item.position || (item.frame && { x: item.frame.x, y: item.frame.y });
    const p = ele.position();
    if (want && (p.x !== want.x || p.y !== want.y)) ele.position({ x: want.x, y: want.y });
  }

  drawnElement(item, detail) {
    const data = this.drawnData(item, detail);
    if (item.kind === "edge" || item.kind === "aggregate") {
      return { group: "edges", data, classes: item.kind === "aggregate" ? "aggregate" : "" };
    }
    const classes = drawnClasses(item).join(" ");
    const position = item.frame ? { x: item.frame.x, y: item.frame.y } : { ...item.position };
    // The model places every node (a drag would only move it until the next
    // redraw): a drag anywhere pans.
    return { group: "nodes", data, classes, position, grabbable: false };
  }

  // Cytoscape data for one item of fleet.js drawList.
  drawnData(item, detail) {
    const s = item.source;
    if (item.kind === "edge") return edgeData(s);
    if (item.kind === "aggregate") {
      const data = edgeData(s);
      data.id = item.id;
      data.width = aggregateWidth(s, detail);
      data.label = "";
      return data;
    }
    if (item.kind === "leaf") return nodeData(s);
    const frame = { frameW: item.frame.w, frameH: item.frame.h };
    if (item.kind === "frame") return { ...nodeData(s), ...frame };
    const fontSize = Math.max(16, item.frame.w / 9);
    // No traffic to tell while the links are still coming (drawNodes).
    const traffic = this.awaitingLinks ? "" : ` · ${shortNumber(roughly(s.rate))} conn/s`;
    const rate = this.awaitingLinks ? {} : { connections_per_s: s.rate };
    if (item.kind === "group") {
      return {
        id: item.id, name: s.key, kind: "group", status: s.status,
        colour: statusColour(s.status), ...frame, fontSize,
        label: `${s.key}\n${s.hosts} hosts · ${s.containers} containers${traffic}`,
        attrs: { id: item.id, type: "group", name: s.key, status: s.status, hosts: s.hosts,
          containers: s.containers, ...rate },
      };
    }
    // A host tile: the host with its containers' worst status and traffic.
    const data = nodeData({ ...s.node, status: s.status });
    return {
      ...data, ...frame, fontSize,
      label: `${data.name}\n${s.containers} containers${traffic}`,
      attrs: { ...s.node, status: s.status, containers: s.containers, ...rate },
    };
  }

  // Fit the whole model (not only what is drawn) into the view.
  fitModel() {
    fitBox(this.cy, this.model.bounds(), landingZooms(this.level).high);
  }

  // Draw node ``id`` if it is not (a search result far away): centre the view
  // on it, close enough to read it. Returns its element (empty if unknown).
  reveal(id) {
    const cy = this.cy;
    if (!this.fleet || cy.getElementById(id).nonempty()) return cy.getElementById(id);
    const p = this.model.positionOf(id);
    if (!p) return cy.collection();
    const zoom = Math.max(cy.zoom(), REVEAL_ZOOM);
    cy.viewport({ zoom, pan: { x: cy.width() / 2 - p.x * zoom, y: cy.height() / 2 - p.y * zoom } });
    this.redraw(true);
    return cy.getElementById(id);
  }

  // The filter menus' values among every container held (a fresh copy,
  // counted again only when containers came or went, or changed image or
  // labels: not for each diff of figures).
  filterChoices() {
    const copy = (v) => ({ ns: new Set(v.ns), project: new Set(v.project), image: new Set(v.image) });
    const cached = this.choicesCache;
    if (cached && cached.model === this.model.factsVersion) return copy(cached.values);
    const values = { ns: new Set(), project: new Set(), image: new Set() };
    for (const node of this.model.nodes.values()) {
      if (node.type !== "container") continue;
      const data = nodeData(node);
      if (data.namespace) values.ns.add(data.namespace);
      if (data.project) values.project.add(data.project);
      if (data.image) values.image.add(data.image);
    }
    this.choicesCache = { model: this.model.factsVersion, values };
    return copy(values);
  }

  // What the view draws now, for tests and the benchmark.
  drawing() {
    return {
      fleet: this.fleet,
      detail: this.drawn ? this.drawn.detail : null,
      drawnNodes: this.cy.nodes().length,
      drawnEdges: this.cy.edges().length,
      nodes: this.model.nodes.size,
      edges: this.model.edges.size,
      awaitingLinks: this.awaitingLinks,
      diffs: { ...this.diffTiming },
      // Times the tile sums were moved by diffs (never summed again whole).
      sumUpdates: this.model.sums ? this.model.sums.updates : 0,
    };
  }

  // The tile sums as diffs moved them against a fresh sum of the same model
  // (tests/browser/test_map_fleet.py): what differs, and how much was compared.
  checkTileSums() {
    const kept = this.model.sums;
    if (!kept) return null;
    this.model.summarise(); // the diffs not yet summed
    const differences = sumsDifferences(kept, this.model.freshSums());
    let sums = 0;
    for (const row of kept.hostSums.values()) sums += row.size;
    return { differences: differences.slice(0, 20), count: differences.length,
      tiles: kept.tiles.size, groups: kept.groups.size, hostSums: sums, updates: kept.updates };
  }

  // ------------------------------------------------------------ whole drawing

  // Apply a diff to the Cytoscape elements when the whole map is drawn.
  drawDiff(diff) {
    const cy = this.cy;
    const wasEmpty = cy.nodes().empty();
    const addedIds = [];
    cy.batch(() => {
      for (const [source, target] of diff.removed_edges || []) {
        cy.getElementById(edgeId(source, target)).remove();
      }
      for (const id of diff.removed_nodes || []) {
        const node = cy.getElementById(id);
        // Removing a compound node removes its children: keep them.
        if (node.nonempty()) {
          node.children().move({ parent: null });
          node.remove();
        }
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
    if (this.fleet && !eles) {
      this.fitModel();
      return;
    }
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
        // A tile sums what it holds; the filters apply to containers drawn.
        if (n.hasClass("tile")) return true;
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

  // Highlight the nodes whose name contains ``query``; returns the matches
  // (a fleet's among every node held, drawn or not).
  search(query) {
    const cy = this.cy;
    const matches = [];
    const fleetHits = new Set();
    if (this.fleet && query) {
      for (const node of this.model.search((n) => nameMatches(nodeData(n), query))) {
        matches.push({ id: node.id, name: String(node.name ?? node.id), kind: String(node.type) });
        fleetHits.add(node.id);
      }
    }
    cy.batch(() => {
      cy.nodes().forEach((n) => {
        const hit = this.fleet
          ? fleetHits.has(n.id())
          : Boolean(query) && !n.hasClass("hidden") && nameMatches(n.data(), query);
        n.toggleClass("match", hit);
        if (hit && !this.fleet) {
          matches.push({ id: n.id(), name: n.data("name"), kind: n.data("kind") });
        }
      });
      const fade = Boolean(query) && matches.length > 0;
      cy.elements().forEach((e) => {
        const keep = !fade || e.hasClass("match") || e.hasClass("tile") ||
          (e.isNode() && e.isParent());
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
