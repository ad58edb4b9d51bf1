// A fleet's tiles summed, kept current diff by diff.
//
// Zoomed out, the fleet map draws host tiles (and region/zone groups) that
// carry their containers' worst status, their count and traffic, and the
// edges between tiles summed (fleet.js drawList). Summing all 47,533 edges of
// a 10,000-container fleet again for every diff (one a second) cost about
// 0.1 s of the page's main thread; here each node and edge keeps the record
// of what it added (to which tile, pair of tiles and group), so a diff takes
// back what its nodes and edges added before and adds what they add now.
// Statuses are counted per severity (a worst status cannot be subtracted).
//
// Whatever the order of the diffs, the sums equal a fresh computation over
// the same nodes and edges (tests/browser/test_map_fleet.py compares them),
// up to floating-point rounding of the rates. Nothing here touches the DOM.

import { connectionRate } from "./graph.js";

// The host labels that group hosts when zoomed out, outermost first.
export const GROUP_LABELS = ["region", "zone"];
// Worst last, as the server rolls statuses up (webapp/topology/graph.py
// STATUS_ORDER): a tile says what its worst container says.
export const STATUSES = ["unknown", "stopped", "ok", "warning", "critical"];
export const SEVERITY = Object.fromEntries(STATUSES.map((s, i) => [s, i]));

function severity(status) {
  return SEVERITY[status] ?? 0;
}

function worstOf(counts) {
  for (let i = counts.length - 1; i > 0; i -= 1) if (counts[i] > 0) return STATUSES[i];
  return STATUSES[0];
}

// The group key of a host node: its GROUP_LABELS values joined, "" without.
export function groupKey(host) {
  const labels = host && host.labels && typeof host.labels === "object" ? host.labels : {};
  return GROUP_LABELS.map((k) => (labels[k] == null ? "" : String(labels[k])))
    .filter(Boolean)
    .join(" / ");
}

// The tile node ``id`` belongs to when zoomed out: its parent (a host) when
// that is held, else itself.
export function ownerOf(nodes, id) {
  const node = nodes.get(id);
  if (!node || node.type === "host") return id;
  const parent = node.parent;
  return parent && parent !== id && nodes.has(parent) ? parent : id;
}

// What an edge adds to its sums.
function edgeFigures(edge) {
  return {
    rate: connectionRate(edge),
    connections: (Number(edge.connections) || 0) + (Number(edge.accepts) || 0),
    failed: Number(edge.failed) || 0,
    failedRate: Number(edge.failed_per_s) || 0,
    level: severity(edge.status || "unknown"),
  };
}

export class TileSums {
  // ``nodes``: id -> node, ``edges``: edge id -> edge (fleet.js FleetModel's).
  constructor(nodes, edges) {
    this.nodes = nodes;
    this.edges = edges;
    this.tiles = new Map(); // owner id -> tile
    this.groups = new Map(); // group key -> group
    this.hostSums = new Map(); // tile -> tile -> summed edge
    this.groupSums = new Map(); // group id or tile -> the same -> summed edge
    this.nodeRecords = new Map(); // node id -> what it added
    this.edgeRecords = new Map(); // edge id -> what it added
    this.groupCache = new Map(); // owner -> its group, while the nodes stand still
    this.copied = new Set(); // objects copied in this update (see ``own``)
    this.sumTables = new Map(); // summed edges changed in this update -> their table
    this.sumsChanged = true; // the strongest edges are chosen again
    this.updates = 0;
    // Ids diffs touched since the sums were last read: summed when they are
    // (a map zoomed in on containers does not draw them).
    this.pendingNodes = new Set();
    this.pendingEdges = new Set();
    this.delta = {}; // moveEdge's difference, made once
    // The first sum makes every object afresh: nothing to copy or detach.
    this.building = true;
    for (const id of nodes.keys()) this.addNode(id);
    for (const id of edges.keys()) this.addEdge(id);
    this.finishAll();
    this.building = false;
  }

  ownerOf(id) {
    return ownerOf(this.nodes, id);
  }

  // The group of tile ``owner`` (a host with group labels), else null.
  groupOf(owner) {
    let key = this.groupCache.get(owner);
    if (key === undefined) {
      const node = this.nodes.get(owner);
      key = node && node.type === "host" ? groupKey(node) || null : null;
      this.groupCache.set(owner, key);
    }
    return key;
  }

  // Note the ids a diff touched (added, changed or removed).
  touch(nodeIds, edgeIds) {
    for (const id of nodeIds) this.pendingNodes.add(id);
    for (const id of edgeIds) this.pendingEdges.add(id);
  }

  // Bring the sums up to the nodes and edges held now: what the touched ids
  // added before is taken back and what they add now is added.
  update() {
    if (!this.pendingNodes.size && !this.pendingEdges.size) return;
    this.updates += 1;
    this.groupCache.clear();
    const nodes = this.pendingNodes;
    const edges = this.pendingEdges;
    this.pendingNodes = new Set();
    this.pendingEdges = new Set();
    const nodeIds = [...nodes];
    // Nodes that came or went, or changed type, parent or (a host) group:
    // other nodes' and edges' tiles may change with them. Rare (a container
    // started or gone, a host relabelled), so every record is looked at then.
    const moved = new Set();
    for (const id of nodeIds) {
      const record = this.nodeRecords.get(id);
      const node = this.nodes.get(id);
      if (!record || !node || record.type !== node.type ||
          record.parent !== (node.parent ?? null) ||
          (record.self && record.group !== this.groupOf(id))) {
        moved.add(id);
      }
    }
    if (moved.size) {
      for (const [id, record] of this.nodeRecords) if (moved.has(record.parent)) nodes.add(id);
      // Ids (held or not) whose tile or group is another now: their edges
      // are summed elsewhere.
      const shifted = new Set();
      for (const id of nodes) {
        const record = this.nodeRecords.get(id);
        const owner = this.ownerOf(id);
        if (!record || record.owner !== owner || record.group !== this.groupOf(owner)) {
          shifted.add(id);
        }
      }
      for (const [id, record] of this.edgeRecords) {
        if (shifted.has(record.source) || shifted.has(record.target)) edges.add(id);
      }
    }
    // Every tile and group stands: an edge still held moves its sums by what
    // its figures moved (or not at all), one pass instead of two.
    const again = moved.size ? edges : [];
    if (!moved.size) for (const id of edges) if (!this.moveEdge(id)) again.push(id);
    for (const id of again) this.removeEdge(id);
    for (const id of nodes) this.removeNode(id);
    for (const id of nodes) if (this.nodes.has(id)) this.addNode(id);
    for (const id of again) if (this.edges.has(id)) this.addEdge(id);
    this.finish();
  }

  // The summed edges drawn zoomed out: ``choose`` picks from all of them.
  strongest(choose) {
    this.update();
    if (this.sumsChanged || !this.chosen) {
      this.chosen = { hostEdges: choose(this.hostSums), groupEdges: choose(this.groupSums) };
      this.sumsChanged = false;
    }
    return this.chosen;
  }

  // ------------------------------------------------------------ records

  addNode(id) {
    const node = this.nodes.get(id);
    const owner = this.ownerOf(id);
    const record = {
      owner, group: this.groupOf(owner), parent: node.parent ?? null, type: node.type,
      self: owner === id, level: severity(node.status || "unknown"),
    };
    const tile = this.tile(owner);
    tile.refs += 1;
    tile.statuses[record.level] += 1;
    if (!record.self && record.type === "container") tile.containers += 1;
    this.nodeRecords.set(id, record);
  }

  removeNode(id) {
    const record = this.nodeRecords.get(id);
    if (!record) return;
    this.nodeRecords.delete(id);
    const tile = this.tile(record.owner);
    tile.refs -= 1;
    tile.statuses[record.level] -= 1;
    if (!record.self && record.type === "container") tile.containers -= 1;
  }

  addEdge(id) {
    const edge = this.edges.get(id);
    const a = this.ownerOf(edge.source);
    const b = this.ownerOf(edge.target);
    const ga = this.groupOf(a);
    const gb = this.groupOf(b);
    const record = {
      source: edge.source, target: edge.target, a, b, ga,
      ida: ga ? `group:${ga}` : a, idb: gb ? `group:${gb}` : b,
      ...edgeFigures(edge),
    };
    this.edgeRecords.set(id, record);
    this.count(record, 1);
  }

  // An edge held before and now, between the same tiles and groups: its
  // sums move by the difference of its figures, and are not touched (nor
  // copied, so not redrawn) when no summed figure changed. Returns whether
  // it was done (false: not held before or now: take it back, add it again).
  moveEdge(id) {
    const record = this.edgeRecords.get(id);
    const edge = this.edges.get(id);
    if (!record || !edge) return false;
    const now = edgeFigures(edge);
    if (now.rate === record.rate && now.connections === record.connections &&
        now.failed === record.failed && now.failedRate === record.failedRate &&
        now.level === record.level) {
      return true;
    }
    const delta = this.delta;
    delta.a = record.a;
    delta.b = record.b;
    delta.ga = record.ga;
    delta.ida = record.ida;
    delta.idb = record.idb;
    delta.rate = now.rate - record.rate;
    delta.connections = now.connections - record.connections;
    delta.failed = now.failed - record.failed;
    delta.failedRate = now.failedRate - record.failedRate;
    delta.level = now.level;
    delta.from = record.level;
    Object.assign(record, now); // the record is this object's alone
    this.count(delta, 1, false);
    return true;
  }

  removeEdge(id) {
    const record = this.edgeRecords.get(id);
    if (!record) return;
    this.edgeRecords.delete(id);
    this.count(record, -1);
  }

  // Add (``sign`` 1) or take back (-1) what an edge adds to the sums; or,
  // not ``whole``, add a difference (moveEdge: the edge counted already).
  count(record, sign, whole = true) {
    const { a, b, rate, failed } = record;
    const refs = whole ? sign : 0;
    const ta = this.tile(a);
    ta.refs += refs;
    ta.rate += sign * rate;
    if (failed !== 0) ta.failed += sign * failed;
    const tb = this.tile(b);
    tb.refs += refs;
    tb.rate += sign * rate;
    if (a !== b) this.sum(this.hostSums, a, b, record, sign, whole);
    if (record.ida !== record.idb) {
      this.sum(this.groupSums, record.ida, record.idb, record, sign, whole);
    }
    if (record.ga) this.group(record.ga).rate += sign * rate;
  }

  sum(table, a, b, record, sign, whole = true) {
    let row = table.get(a);
    if (!row) {
      row = new Map();
      table.set(a, row);
    }
    let sum = row.get(b);
    if (!sum) {
      sum = {
        source: a, target: b, status: "unknown", edges: 0, connections: 0, failed: 0,
        connections_per_s: 0, failed_per_s: 0, statuses: [0, 0, 0, 0, 0],
      };
      row.set(b, sum);
      if (!this.building) this.copied.add(sum);
    } else if (!this.building && !this.copied.has(sum)) {
      sum = { ...sum, statuses: sum.statuses.slice() };
      this.copied.add(sum);
      row.set(b, sum);
    }
    if (!this.building) this.sumTables.set(sum, table);
    sum.connections += sign * record.connections;
    sum.failed += sign * record.failed;
    sum.connections_per_s += sign * record.rate;
    sum.failed_per_s += sign * record.failedRate;
    if (whole) {
      sum.edges += sign;
      sum.statuses[record.level] += sign;
    } else if (record.level !== record.from) {
      sum.statuses[record.from] -= 1;
      sum.statuses[record.level] += 1;
    }
    this.sumsChanged = true;
  }

  // ------------------------------------------------------------ objects

  // The objects drawn are copied before their first change in an update:
  // livemap.js restyles an element only when its source object is another.
  own(map, key, object, copy) {
    if (this.building || this.copied.has(object)) return object;
    const mine = copy(object);
    this.copied.add(mine);
    map.set(key, mine);
    return mine;
  }

  // Tile ``owner``, made when missing, taken out of its group until finish().
  tile(owner) {
    let tile = this.tiles.get(owner);
    if (!tile) {
      tile = {
        node: this.nodes.get(owner) || { id: owner }, status: "unknown", containers: 0,
        rate: 0, failed: 0, refs: 0, statuses: [0, 0, 0, 0, 0], inGroup: null,
      };
      if (!this.building) this.copied.add(tile);
      this.tiles.set(owner, tile);
      return tile;
    }
    tile = this.own(this.tiles, owner, tile, (t) => ({ ...t, statuses: t.statuses.slice() }));
    if (tile.inGroup) {
      const { key, level, containers } = tile.inGroup;
      const group = this.group(key);
      group.hosts -= 1;
      group.containers -= containers;
      group.statuses[level] -= 1;
      tile.inGroup = null;
    }
    return tile;
  }

  group(key) {
    const group = this.groups.get(key);
    if (!group) {
      const made = {
        id: `group:${key}`, key, status: "unknown", hosts: 0, containers: 0, rate: 0,
        failed: 0, statuses: [0, 0, 0, 0, 0],
      };
      if (!this.building) this.copied.add(made);
      this.groups.set(key, made);
      return made;
    }
    return this.own(this.groups, key, group, (g) => ({ ...g, statuses: g.statuses.slice() }));
  }

  // Statuses from their counts; what holds nothing goes; tiles back into
  // their groups. For the objects an update changed.
  finish() {
    for (const object of this.copied) if (object.refs !== undefined) this.finishTile(object);
    // Groups after their tiles: finishing a tile adds to its group.
    for (const object of this.copied) if (object.hosts !== undefined) this.finishGroup(object);
    for (const [sum, table] of this.sumTables) this.finishSum(table, sum);
    this.sumTables.clear();
    this.copied.clear();
  }

  // The same for everything, after the first sum.
  finishAll() {
    for (const tile of this.tiles.values()) this.finishTile(tile);
    for (const group of [...this.groups.values()]) this.finishGroup(group);
    for (const table of [this.hostSums, this.groupSums]) {
      for (const row of [...table.values()]) for (const sum of [...row.values()]) this.finishSum(table, sum);
    }
  }

  finishTile(tile) {
    const owner = tile.node.id;
    if (tile.refs <= 0) {
      this.tiles.delete(owner);
      return;
    }
    // The node as held now; a tile of an id held by no node (an edge's end
    // the server sent no node for) carries only the id.
    const held = this.nodes.get(owner);
    if (held) tile.node = held;
    else if (Object.keys(tile.node).length !== 1) tile.node = { id: owner };
    tile.status = worstOf(tile.statuses);
    const key = this.groupOf(owner);
    if (!key) return;
    const level = severity(tile.status);
    const group = this.group(key);
    group.hosts += 1;
    group.containers += tile.containers;
    group.statuses[level] += 1;
    tile.inGroup = { key, level, containers: tile.containers };
  }

  finishGroup(group) {
    if (group.hosts <= 0) this.groups.delete(group.key);
    else group.status = worstOf(group.statuses);
  }

  finishSum(table, sum) {
    const row = table.get(sum.source);
    if (sum.edges > 0) {
      sum.status = worstOf(sum.statuses);
      return;
    }
    if (!row) return;
    row.delete(sum.target);
    if (!row.size) table.delete(sum.source);
  }
}

// What differs between two TileSums (tiles, groups and both tables of summed
// edges), rates compared to a relative ``tolerance``: for tests.
export function sumsDifferences(a, b, tolerance = 1e-9) {
  const out = [];
  const near = (x, y) => Math.abs(x - y) <= tolerance * Math.max(1, Math.abs(x), Math.abs(y));
  const compare = (what, x, y, fields) => {
    if (!x || !y) {
      out.push(`${what}: ${x ? "only the first" : "only the second"}`);
      return;
    }
    for (const f of fields) {
      const same = typeof x[f] === "number" ? near(x[f], y[f]) : x[f] === y[f];
      if (!same) out.push(`${what}.${f}: ${x[f]} != ${y[f]}`);
    }
  };
  const tileFields = ["status", "containers", "rate", "failed"];
  for (const key of new Set([...a.tiles.keys(), ...b.tiles.keys()])) {
    compare(`tile ${key}`, a.tiles.get(key), b.tiles.get(key), tileFields);
    const x = a.tiles.get(key);
    const y = b.tiles.get(key);
    const bare = (n) => Object.keys(n).length === 1;
    if (x && y && x.node !== y.node && !(bare(x.node) && bare(y.node) && x.node.id === y.node.id)) {
      out.push(`tile ${key}.node: another object`);
    }
  }
  for (const key of new Set([...a.groups.keys(), ...b.groups.keys()])) {
    compare(`group ${key}`, a.groups.get(key), b.groups.get(key),
      ["status", "hosts", "containers", "rate"]);
  }
  const sumFields = ["status", "edges", "connections", "failed", "connections_per_s",
    "failed_per_s"];
  for (const name of ["hostSums", "groupSums"]) {
    const rows = new Set([...a[name].keys(), ...b[name].keys()]);
    for (const s of rows) {
      const ra = a[name].get(s) || new Map();
      const rb = b[name].get(s) || new Map();
      for (const t of new Set([...ra.keys(), ...rb.keys()])) {
        compare(`${name} ${s} -> ${t}`, ra.get(t), rb.get(t), sumFields);
      }
    }
  }
  return out;
}
