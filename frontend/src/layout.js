// Where nodes go: a whole-map layout, a place for each new node, a fitted view.
//
// Functions over a Cytoscape instance that move nodes or the viewport and never
// add or remove elements (livemap.js owns the element set). A map keeps every
// node it already shows where it is and places only new ones, next to their
// neighbours, so an update never reshuffles what you look at.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";

// fCoSE keeps compound nodes (hosts around containers) apart, unlike plain CoSE.
cytoscape.use(fcose);

const MAX_FIT_ZOOM = 1.4;
const FIT_PADDING = 60;
const PLACE_RADII = [140, 200, 280, 380];
const PLACE_ANGLES = 12;
const MIN_GAP = 110; // node plus its label, roughly
// Above this many nodes the first layout is fCoSE's fast draft (spectral
// placement only): the full force pass costs seconds on a 2,000-node map.
const DRAFT_LAYOUT_NODES = 600;
// Above this many nodes even fCoSE's draft takes seconds: a grid per host,
// in linear time (bench/map_render.py: first map under 2 s at 2,000).
const GRID_LAYOUT_NODES = 1000;
const GRID_CELL = 110;

// Positions the nodes ``addedIds`` just added: back where they were at this
// level (``saved``) when the map was empty, else next to their neighbours.
// Returns whether the whole map was laid out afresh.
export function positionAdded(cy, addedIds, { wasEmpty, saved, dense }) {
  if (!addedIds.length) return false;
  if (!wasEmpty) {
    placeNear(cy, addedIds);
    return false;
  }
  const known = addedIds.filter((id) => saved.has(id));
  if (!known.length) {
    layoutAll(cy, dense);
    return true;
  }
  cy.batch(() => {
    for (const id of known) {
      const node = cy.getElementById(id);
      if (node.isChildless()) node.position(saved.get(id));
    }
  });
  const knownSet = new Set(known);
  placeNear(cy, addedIds.filter((id) => !knownSet.has(id)));
  return false;
}

function layoutAll(cy, dense) {
  if (cy.nodes().length > GRID_LAYOUT_NODES) {
    layoutGrid(cy, dense);
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
// id order. Linear time and the same picture for the same graph. A dense map
// (livemap.js setDense) has no compounds: its hosts become frames around
// their containers.
function layoutGrid(cy, dense) {
  const groups = new Map();
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

// Fits ``eles`` (default: everything) in the view, zoomed in no further than
// ``zoomCap`` (levels.js: short of the next level's threshold).
export function fitView(cy, eles, zoomCap) {
  // Fit to where the nodes are: Cytoscape's own bounding box computes every
  // style first, over a second on a 2,000-node map.
  const bb = positionBounds((eles || cy.elements()).nodes());
  if (bb.w > 0 && bb.h > 0) {
    fitBox(cy, { x1: bb.x1, y1: bb.y1, x2: bb.x1 + bb.w, y2: bb.y1 + bb.h }, zoomCap);
    return;
  }
  cy.fit(eles, FIT_PADDING);
  const high = Math.min(MAX_FIT_ZOOM, zoomCap);
  if (cy.zoom() > high) {
    cy.zoom(high);
    if (eles) cy.center(eles);
    else cy.center();
  }
}

// Fits the model box {x1, y1, x2, y2} in the view (one viewport change),
// zoomed in no further than ``zoomCap``.
export function fitBox(cy, box, zoomCap) {
  const w = Math.max(1, box.x2 - box.x1);
  const h = Math.max(1, box.y2 - box.y1);
  const fitted = Math.min((cy.width() - 2 * FIT_PADDING) / w, (cy.height() - 2 * FIT_PADDING) / h);
  const zoom = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), MAX_FIT_ZOOM, zoomCap, fitted));
  cy.viewport({
    zoom,
    pan: { x: cy.width() / 2 - zoom * (box.x1 + w / 2), y: cy.height() / 2 - zoom * (box.y1 + h / 2) },
  });
}

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

// New leaves go next to a shown neighbour (by edge, else a sibling in the
// same host), in the free spot nearest to it; compound parents follow.
function placeNear(cy, ids) {
  const fresh = new Set(ids);
  const placed = cy.nodes().filter((n) => n.isChildless() && !fresh.has(n.id()));
  const points = placed.map((n) => ({ ...n.position() }));
  const leaves = ids
    .map((id) => cy.getElementById(id))
    .filter((n) => n.nonempty() && n.isChildless());
  let spill = 0;
  for (const node of leaves) {
    const anchors = placedNeighbours(node, fresh);
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

// Where the already placed neighbours of ``node`` are (else its siblings).
function placedNeighbours(node, fresh) {
  const shown = (n) => n.isChildless() && !fresh.has(n.id());
  let anchors = node.neighborhood("node").filter(shown);
  if (anchors.empty() && node.isChild()) anchors = node.siblings().filter(shown);
  return anchors.map((n) => ({ ...n.position() }));
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
