// Portolan's live map: the page's entry point (bundled to static/portolan/map.js).
//
// The server sends a snapshot, then diffs (webapp/maps/consumers.py). The map
// keeps every node it already shows where it is and places only new nodes,
// next to their neighbours, so an update never reshuffles what you look at.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import "./map.css";
import { MAP_STYLE, diffAgainst, edgeData, edgeId, nodeData } from "./graph.js";
import { TopologySocket } from "./socket.js";
import { Details, StatusBar, Tooltip } from "./ui.js";

// fCoSE keeps compound nodes (hosts around containers) apart, unlike plain CoSE.
cytoscape.use(fcose);

const MAX_FIT_ZOOM = 1.4;
const PLACE_RADII = [140, 200, 280, 380];
const PLACE_ANGLES = 12;
const MIN_GAP = 110; // node plus its label, roughly

export class LiveMap {
  constructor(container) {
    this.cy = cytoscape({
      container,
      style: MAP_STYLE,
      elements: [],
      minZoom: 0.05,
      maxZoom: 4,
      boxSelectionEnabled: false,
      selectionType: "single",
    });
    this.shownNodes = new Map(); // id -> node as the server sent it
    this.shownEdges = new Map(); // edge id -> edge as the server sent it
  }

  applySnapshot(graph) {
    this.applyDiff(diffAgainst(this.shownNodes, this.shownEdges, graph || {}));
  }

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
      for (const node of [...(diff.added_nodes || []), ...(diff.changed_nodes || [])]) {
        const ele = cy.getElementById(node.id);
        if (ele.nonempty()) {
          ele.data(nodeData(node));
        } else {
          cy.add({ group: "nodes", data: nodeData(node), position: { x: 0, y: 0 } });
          addedIds.push(node.id);
        }
        this.shownNodes.set(node.id, node);
      }
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
    if (addedIds.length) {
      if (wasEmpty) this.layoutAll();
      else this.place(addedIds);
    }
  }

  // Put each node under its ``parent`` when that node is shown, else at top level.
  reparent() {
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
    cy.layout({
      name: "fcose",
      quality: "proof",
      animate: false,
      randomize: true,
      fit: false,
      padding: 40,
      nodeDimensionsIncludeLabels: true,
      idealEdgeLength: () => 130,
      nodeRepulsion: () => 6000,
      nestingFactor: 0.3,
      gravity: 0.3,
      numIter: 2500,
      tile: true,
      packComponents: true,
    }).run();
    this.fit();
  }

  fit() {
    const cy = this.cy;
    cy.fit(undefined, 60);
    if (cy.zoom() > MAX_FIT_ZOOM) {
      cy.zoom(MAX_FIT_ZOOM);
      cy.center();
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

  // Plain summaries for tests and the console; the page itself never reads them.
  summary() {
    return {
      nodes: this.cy.nodes().map((n) => ({
        id: n.id(),
        name: n.data("label"),
        type: n.data("kind"),
        status: n.data("status"),
        parent: n.isChild() ? n.parent().id() : null,
      })),
      edges: this.cy.edges().map((e) => ({
        source: e.source().id(),
        target: e.target().id(),
        connections: e.data("attrs").connections ?? 0,
        failed: e.data("attrs").failed ?? 0,
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

function start() {
  const config = JSON.parse(document.getElementById("portolan-config").textContent);
  const container = document.getElementById("map");
  const map = new LiveMap(container);
  const status = new StatusBar(document.getElementById("statusbar"));
  const tooltip = new Tooltip(document.getElementById("tooltip"));
  const details = new Details(document.getElementById("details"), () => {
    map.cy.elements().unselect();
    details.hide();
  });

  const refresh = () => {
    status.setCounts(map.cy.nodes().length, map.cy.edges().length);
    status.touch();
    if (details.current !== null) {
      const ele = map.cy.getElementById(details.current);
      if (ele.nonempty()) details.show(ele);
      else details.hide();
    }
  };

  map.cy.on("mouseover", "node, edge", (event) => {
    const p = event.renderedPosition || { x: 0, y: 0 };
    tooltip.show(event.target, p.x, p.y);
  });
  map.cy.on("mouseout", "node, edge", () => tooltip.hide());
  map.cy.on("viewport", () => tooltip.hide());
  map.cy.on("tap", (event) => {
    if (event.target === map.cy) {
      details.hide();
      return;
    }
    details.show(event.target);
  });

  const socket = new TopologySocket(config.socketPath, config.level, {
    onState(state, delay) {
      if (state === "connecting") status.setState("connecting", "connecting…");
      else if (state === "open") status.setState("open", "connected, waiting for data");
      else {
        const seconds = Math.round((delay || 0) / 100) / 10;
        status.setState("closed", `disconnected, retrying in ${seconds} s`);
      }
    },
    onMessage(message) {
      if (message.type === "snapshot") {
        map.applySnapshot(message.graph);
        status.setState("live", "live");
      } else if (message.type === "diff") {
        map.applyDiff(message);
        status.setState("live", "live");
      } else if (message.type === "error") {
        status.setState("error", `server: ${message.message}`);
        return;
      } else {
        return;
      }
      refresh();
    },
  });
  socket.connect();

  window.addEventListener("keydown", (event) => {
    if (event.key === "f" && !event.ctrlKey && !event.metaKey && !event.altKey) map.fit();
    if (event.key === "Escape") details.hide();
  });

  // A read-only handle for tests and the console.
  window.portolanMap = Object.freeze({
    level: config.level,
    summary: () => map.summary(),
    nodeNames: () => map.cy.nodes().map((n) => n.data("label")),
    edgeCount: () => map.cy.edges().length,
    state: () => document.getElementById("statusbar").dataset.state,
    // Where a node is drawn, in page coordinates (to point at it).
    pagePosition(id) {
      const node = map.cy.getElementById(id);
      if (node.empty()) return null;
      const box = container.getBoundingClientRect();
      const p = node.renderedPosition();
      return { x: box.left + p.x, y: box.top + p.y };
    },
  });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
