// The fleet model: the whole graph of a level in plain JS structures, where
// every node sits, and what of it a viewport should draw.
//
// A map of thousands of containers cannot be drawn whole at 30 fps. Like an
// online map, it draws by zoom: far out, groups of hosts (by their labels
// region/zone) or hosts, each a tile carrying its containers' worst status and
// traffic, with host-to-host edges summed; closer in, the containers (and
// their hosts' frames) inside the viewport, with the edges between them. The
// client holds everything the server sent, so panning, zooming and searching
// never wait on the server. livemap.js turns ``drawList`` into Cytoscape
// elements; nothing here touches Cytoscape or the DOM.
//
// Positions are deterministic, per host group and host, computed in linear
// time when the model is first filled (no force layout): each host's
// containers in a square grid, hosts in rows inside their group's block,
// groups in rows. Later arrivals take the next free slot of their host (a new
// host, a block after the last one), so an update never moves what is shown.

import { edgeId } from "./graph.js";
import { GROUP_LABELS, SEVERITY, TileSums, groupKey, ownerOf } from "./tilesums.js";

export { GROUP_LABELS, groupKey };
// Below this zoom the map shows host tiles, below GROUP_ZOOM group tiles (when
// hosts carry group labels); above it, containers.
export const HOST_ZOOM = 0.3;
export const GROUP_ZOOM = 0.035;
// Host-to-host edges drawn at most when zoomed out (the busiest and failing
// first): 500 hosts talking at random make some 45,000 host pairs.
const AGGREGATE_EDGE_CAP = 800;
// The drawn containers reach this fraction of the viewport beyond each side,
// so that a pan redraws only after leaving it (hysteresis).
const DRAW_MARGIN = 0.35;
const CELL = 110; // one container and its label
const HOST_GAP = 2 * CELL;
const HOST_HEADER = 40;
const GROUP_GAP = 6 * CELL;

export class FleetModel {
  constructor() {
    this.nodes = new Map(); // id -> node as the server sent it
    this.edges = new Map(); // edge id -> edge as the server sent it
    this.positions = new Map(); // leaf id -> {x, y}
    this.blocks = new Map(); // host (or "" for top-level leaves) -> its grid
    this.groups = new Map(); // group key -> {x, y, w, h, hosts: [...]}
    this.laidOut = false;
    // Counts the changes; ``factsVersion`` only those of nodes' images and
    // labels, or nodes that came or went (the filter menus are made again).
    this.version = 0;
    this.factsVersion = 0;
    // Hosts and groups summed (tilesums.js), made when first drawn zoomed
    // out, then kept current by each diff.
    this.sums = null;
    // Edges by the block of their source ({byOwner: block -> id -> edge,
    // blockOf: edge id -> block}), made when first drawn zoomed in, then kept
    // current by each diff.
    this.edgeIndex = null;
  }

  clear() {
    this.nodes.clear();
    this.edges.clear();
    this.positions.clear();
    this.blocks.clear();
    this.groups.clear();
    this.laidOut = false;
    this.version += 1;
    this.factsVersion += 1;
    this.sums = null;
    this.edgeIndex = null;
  }

  // Fill an empty model from a whole graph (node-link JSON) without
  // diffing it against nothing: a fleet's first snapshot is 60,000 records.
  fill(graph) {
    this.clear();
    for (const node of graph.nodes || []) this.nodes.set(node.id, node);
    for (const edge of graph.links || []) this.edges.set(edgeId(edge.source, edge.target), edge);
    return this.nodes.size + this.edges.size > 0;
  }

  // The links of the graph whose nodes alone ``fill`` took (a first
  // snapshot's nodes come before its links): the sums and the edge index are
  // made again from them when next drawn.
  fillLinks(links) {
    for (const edge of links) this.edges.set(edgeId(edge.source, edge.target), edge);
    this.version += 1;
    this.sums = null;
    this.edgeIndex = null;
  }

  // The tile a leaf belongs to when zoomed out: its host, else itself.
  ownerOf(id) {
    return ownerOf(this.nodes, id);
  }

  // Apply a diff (the server's message shape). New leaves get a slot; the
  // sums and the edge index move by what the diff touched.
  // Returns whether anything changed (a snapshot sent again changes nothing).
  applyDiff(diff) {
    const changes = ["added_nodes", "removed_nodes", "changed_nodes", "added_edges",
      "removed_edges", "changed_edges"].reduce((n, k) => n + (diff[k] || []).length, 0);
    if (!changes) return false;
    const nodeIds = [];
    const edgeIds = [];
    // Whether a node came, went or changed its parent: edges may start in
    // another block (rare: the edge index is made again).
    let moved = (diff.removed_nodes || []).length > 0;
    let facts = moved;
    for (const [source, target] of diff.removed_edges || []) {
      const id = edgeId(source, target);
      this.edges.delete(id);
      edgeIds.push(id);
    }
    for (const id of diff.removed_nodes || []) {
      const block = this.blocks.get(this.blockKeyOf(id));
      if (block) block.members.delete(id);
      this.nodes.delete(id);
      this.positions.delete(id);
      nodeIds.push(id);
    }
    const added = [];
    for (const node of [...(diff.added_nodes || []), ...(diff.changed_nodes || [])]) {
      const old = this.nodes.get(node.id);
      if (!old) added.push(node.id);
      if (!old || old.image !== node.image || old.labels !== node.labels) facts = true;
      if (!old || old.type !== node.type || (old.parent ?? null) !== (node.parent ?? null)) {
        moved = true;
      }
      this.nodes.set(node.id, node);
      nodeIds.push(node.id);
    }
    for (const edge of [...(diff.added_edges || []), ...(diff.changed_edges || [])]) {
      const id = edgeId(edge.source, edge.target);
      this.edges.set(id, edge);
      edgeIds.push(id);
    }
    if (this.laidOut) for (const id of added) this.place(id);
    this.version += 1;
    if (facts) this.factsVersion += 1;
    if (this.sums) this.sums.touch(nodeIds, edgeIds);
    if (moved) this.edgeIndex = null;
    else if (this.edgeIndex) for (const id of edgeIds) this.indexEdge(id);
    return true;
  }

  // The block a leaf is placed in: its host's, or "" for top-level leaves.
  blockKeyOf(id) {
    const owner = this.ownerOf(id);
    return owner === id ? "" : owner;
  }

  isHost(id) {
    const node = this.nodes.get(id);
    return Boolean(node) && node.type === "host";
  }

  // ---------------------------------------------------------------- layout

  // Every leaf its slot: hosts grouped by label, each a grid of its leaves.
  layout() {
    this.positions.clear();
    this.blocks.clear();
    this.groups.clear();
    const members = new Map(); // host id or "" -> leaf ids
    const hostsByGroup = new Map();
    for (const [id, node] of this.nodes) {
      if (node.type === "host") {
        const key = groupKey(node);
        if (!hostsByGroup.has(key)) hostsByGroup.set(key, []);
        hostsByGroup.get(key).push(id);
        if (!members.has(id)) members.set(id, []);
        continue;
      }
      const owner = this.ownerOf(id);
      const key = owner === id ? "" : owner;
      if (!members.has(key)) members.set(key, []);
      members.get(key).push(id);
    }
    if (members.has("")) {
      // Externals and other top-level leaves: a block of their own, last.
      if (!hostsByGroup.has("\uffff")) hostsByGroup.set("\uffff", []);
      hostsByGroup.get("\uffff").push("");
    }
    const groupKeys = [...hostsByGroup.keys()].sort();
    // Each group's hosts in a square of equal cells, the groups in rows.
    const boxes = groupKeys.map((key) => {
      const hosts = hostsByGroup.get(key).sort();
      const grids = hosts.map((h) => {
        const n = (members.get(h) || []).length;
        const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
        return { host: h, cols, rows: Math.max(1, Math.ceil(n / cols)) };
      });
      const cellW = Math.max(...grids.map((g) => g.cols)) * CELL + HOST_GAP;
      const cellH = Math.max(...grids.map((g) => g.rows)) * CELL + HOST_HEADER + HOST_GAP;
      const perRow = Math.max(1, Math.ceil(Math.sqrt(grids.length)));
      return {
        key, grids, cellW, cellH, perRow,
        w: perRow * cellW, h: Math.ceil(grids.length / perRow) * cellH,
      };
    });
    const groupsPerRow = Math.max(1, Math.ceil(Math.sqrt(boxes.length)));
    let x = 0;
    let y = 0;
    let rowH = 0;
    boxes.forEach((box, i) => {
      box.grids.forEach((g, k) => {
        const gx = x + (k % box.perRow) * box.cellW;
        const gy = y + Math.floor(k / box.perRow) * box.cellH;
        this.blocks.set(g.host, {
          x: gx, y: gy + HOST_HEADER, cols: g.cols, rows: g.rows, next: 0, members: new Set(),
        });
        for (const id of (members.get(g.host) || []).sort()) this.place(id);
      });
      if (box.key !== "\uffff") {
        this.groups.set(box.key, { x, y, w: box.w - HOST_GAP, h: box.h - HOST_GAP });
      }
      x += box.w + GROUP_GAP;
      rowH = Math.max(rowH, box.h);
      if ((i + 1) % groupsPerRow === 0) {
        x = 0;
        y += rowH + GROUP_GAP;
        rowH = 0;
      }
    });
    this.laidOut = true;
  }

  // The next free slot of the leaf's host (a host or top level not seen at
  // layout time gets a new block below everything).
  place(id) {
    const node = this.nodes.get(id);
    if (!node) return;
    if (node.type === "host") {
      if (!this.blocks.has(id)) this.newBlock(id);
      return;
    }
    const key = this.blockKeyOf(id);
    if (!this.blocks.has(key)) this.newBlock(key);
    const b = this.blocks.get(key);
    const k = b.next;
    b.next += 1;
    b.members.add(id);
    b.rows = Math.max(b.rows, Math.ceil(b.next / b.cols));
    this.positions.set(id, { x: b.x + (k % b.cols) * CELL, y: b.y + Math.floor(k / b.cols) * CELL });
  }

  newBlock(key) {
    const box = this.bounds();
    const late = [...this.blocks.values()].filter((b) => b.late);
    const x = late.length ? Math.max(...late.map((b) => b.x + b.cols * CELL)) + HOST_GAP : box.x1;
    this.blocks.set(key, {
      x, y: box.late + HOST_HEADER, cols: 5, rows: 1, next: 0, late: true, members: new Set(),
    });
  }

  // The box around every block; ``late`` is where blocks added later go.
  bounds() {
    let x1 = Infinity;
    let y1 = Infinity;
    let x2 = -Infinity;
    let y2 = -Infinity;
    let late = -Infinity;
    for (const b of this.blocks.values()) {
      x1 = Math.min(x1, b.x - CELL / 2);
      y1 = Math.min(y1, b.y - HOST_HEADER - CELL / 2);
      x2 = Math.max(x2, b.x + b.cols * CELL);
      y2 = Math.max(y2, b.y + b.rows * CELL);
      if (!b.late) late = Math.max(late, b.y + b.rows * CELL + HOST_GAP);
    }
    if (x1 === Infinity) return { x1: 0, y1: 0, x2: 0, y2: 0, late: 0 };
    return { x1, y1, x2, y2, late: late === -Infinity ? y2 + HOST_GAP : late };
  }

  // Where a block's frame (a host tile) is: its centre and size.
  frameOf(key) {
    const b = this.blocks.get(key);
    if (!b) return null;
    const w = b.cols * CELL;
    const h = b.rows * CELL + HOST_HEADER;
    return { x: b.x - CELL / 2 + w / 2, y: b.y - HOST_HEADER - CELL / 2 + h / 2, w, h };
  }

  // Where node ``id`` is drawn (a host: its frame's centre), or null.
  positionOf(id) {
    if (this.positions.has(id)) return this.positions.get(id);
    const frame = this.frameOf(id);
    return frame ? { x: frame.x, y: frame.y } : null;
  }

  // ---------------------------------------------------------------- aggregates

  // Hosts and groups with their leaves' worst status, counts and traffic, and
  // the strongest edges between them summed (tilesums.js): summed in full
  // once, then moved by each diff.
  summarise() {
    if (!this.sums) this.sums = new TileSums(this.nodes, this.edges);
    const chosen = this.sums.strongest(strongest); // brings the sums up to date
    return { tiles: this.sums.tiles, groups: this.sums.groups, ...chosen };
  }

  // The sums computed afresh from what the model holds (a test compares
  // them with the ones the diffs moved: tilesums.js sumsDifferences).
  freshSums() {
    return new TileSums(this.nodes, this.edges);
  }

  // ---------------------------------------------------------------- drawing

  // Which detail a zoom shows: "group", "host" or "container".
  detailAt(zoom) {
    if (zoom < GROUP_ZOOM && this.hasGroups()) return "group";
    return zoom < HOST_ZOOM ? "host" : "container";
  }

  hasGroups() {
    return [...this.groups.keys()].some(Boolean);
  }

  // The model box to draw around a viewport ``extent`` at ``detail``. Tiles
  // are few (hosts or groups, and their strongest edges): all are drawn, so
  // that panning and zooming among them adds and removes nothing (Cytoscape
  // skips what is off screen). Containers: those in the viewport and a
  // margin beyond each side, so that a pan redraws only after leaving it.
  drawBox(extent, detail = "container") {
    if (detail !== "container") {
      return { x1: -Infinity, y1: -Infinity, x2: Infinity, y2: Infinity };
    }
    const mx = extent.w * DRAW_MARGIN;
    const my = extent.h * DRAW_MARGIN;
    return { x1: extent.x1 - mx, y1: extent.y1 - my, x2: extent.x2 + mx, y2: extent.y2 + my };
  }

  // Cytoscape element definitions for ``detail`` inside ``box``: a list of
  // nodes and one of edges, each {group, data, position?, classes?, source}
  // where ``source`` is the model object it was made from.
  drawList(detail, box) {
    const inside = (p, rx = 0, ry = 0) =>
      p.x + rx >= box.x1 && p.x - rx <= box.x2 && p.y + ry >= box.y1 && p.y - ry <= box.y2;
    const nodes = [];
    const edges = [];
    if (detail === "container") {
      // Only the blocks in the box, their leaves, and the edges leaving
      // them: the cost of a redraw is what it draws, not the fleet.
      const drawn = new Set();
      const blocks = [];
      for (const [key, b] of this.blocks) {
        const f = this.frameOf(key);
        if (!f || !inside(f, f.w / 2, f.h / 2)) continue;
        if (key && this.nodes.has(key)) {
          nodes.push({ kind: "frame", id: key, source: this.nodes.get(key), frame: f });
          drawn.add(key);
        }
        blocks.push([key, b]);
      }
      for (const [, b] of blocks) {
        for (const id of b.members) {
          const p = this.positions.get(id);
          if (!p || drawn.has(id) || !inside(p, CELL / 2, CELL / 2)) continue;
          nodes.push({ kind: "leaf", id, source: this.nodes.get(id), position: p });
          drawn.add(id);
        }
      }
      const byOwner = this.edgesByOwner();
      for (const [key] of blocks) {
        for (const [id, edge] of byOwner.get(key) || []) {
          if (drawn.has(edge.source) && drawn.has(edge.target) && edge.source !== edge.target
            && !this.isHost(edge.source) && !this.isHost(edge.target)) {
            edges.push({ kind: "edge", id, source: edge });
          }
        }
      }
      return { nodes, edges };
    }
    const agg = this.summarise();
    const drawn = new Set();
    if (detail === "group") {
      for (const [key, g] of agg.groups) {
        const box2 = this.groups.get(key);
        if (!box2) continue;
        const frame = { x: box2.x + box2.w / 2 - CELL / 2, y: box2.y + box2.h / 2, w: box2.w, h: box2.h };
        nodes.push({ kind: "group", id: g.id, source: g, frame });
        drawn.add(g.id);
      }
    }
    for (const [owner, t] of agg.tiles) {
      if (detail === "group" && groupKey(t.node) && t.node.type === "host") continue;
      const f = t.node.type === "host" ? this.frameOf(owner) : null;
      const p = f || this.positions.get(owner);
      if (!p || !inside(p, f ? f.w / 2 : CELL, f ? f.h / 2 : CELL)) continue;
      nodes.push(f ? { kind: "tile", id: owner, source: t, frame: f }
        : { kind: "leaf", id: owner, source: t.node, position: p });
      drawn.add(owner);
    }
    const table = detail === "group" ? agg.groupEdges : agg.hostEdges;
    for (const s of table) {
      if (drawn.has(s.source) && drawn.has(s.target)) {
        edges.push({ kind: "aggregate", id: `agg:${s.source}\u2192${s.target}`, source: s });
      }
    }
    return { nodes, edges };
  }

  // The edges by the block of their source (a host, "" for top-level
  // leaves), each block's as id -> edge.
  edgesByOwner() {
    if (this.edgeIndex) return this.edgeIndex.byOwner;
    this.edgeIndex = { byOwner: new Map(), blockOf: new Map() };
    for (const id of this.edges.keys()) this.indexEdge(id);
    return this.edgeIndex.byOwner;
  }

  // File edge ``id`` under the block of its source (or take it out).
  indexEdge(id) {
    const { byOwner, blockOf } = this.edgeIndex;
    const old = blockOf.get(id);
    const edge = this.edges.get(id);
    const key = edge ? this.blockKeyOf(edge.source) : undefined;
    if (old !== undefined && old !== key) {
      const list = byOwner.get(old);
      list.delete(id);
      if (!list.size) byOwner.delete(old);
    }
    if (!edge) {
      blockOf.delete(id);
      return;
    }
    let list = byOwner.get(key);
    if (!list) {
      list = new Map();
      byOwner.set(key, list);
    }
    list.set(id, edge);
    blockOf.set(id, key);
  }

  // What a search finds among every node the client holds.
  search(matches) {
    const found = [];
    for (const node of this.nodes.values()) {
      if (matches(node)) found.push(node);
    }
    return found;
  }
}

// The AGGREGATE_EDGE_CAP strongest summed edges: failing first, then busiest.
// ``table``: source -> target -> sum.
function strongest(table) {
  const all = [];
  for (const row of table.values()) for (const sum of row.values()) all.push(sum);
  if (all.length <= AGGREGATE_EDGE_CAP) return all;
  const score = (s) => (SEVERITY[s.status] ?? 0) * 1e12 + s.connections_per_s * 1e3 + s.connections;
  // The cut-off score from a numeric sort (fast on a typed array), then only
  // the sums above it sorted: 45,000 host pairs compared by a function cost
  // a tenth of a second.
  const scores = Float64Array.from(all, score);
  const cut = scores.slice().sort()[scores.length - AGGREGATE_EDGE_CAP];
  const top = [];
  all.forEach((sum, i) => {
    if (scores[i] >= cut) top.push({ sum, score: scores[i] });
  });
  top.sort((a, b) => b.score - a.score);
  return top.slice(0, AGGREGATE_EDGE_CAP).map((s) => s.sum);
}

