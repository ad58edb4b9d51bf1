// Node-link JSON (from the server) -> Cytoscape elements, and the map's style.
//
// Pure functions: no DOM, no Cytoscape instance. Everything the server sends is
// data chosen by whoever starts a container, so it only ever reaches the page as
// Cytoscape canvas text or through textContent (see ui.js).

export const STATUS_COLOURS = {
  ok: "#2f9e5b",
  warning: "#e0a100",
  critical: "#d64545",
  stopped: "#8a94a3",
  unknown: "#8a94a3",
};

export function statusColour(status) {
  return STATUS_COLOURS[status] || STATUS_COLOURS.unknown;
}

// Cytoscape ids of edges are made (and only made) here, from the edge's ends.
export function edgeId(source, target) {
  return `edge:${source}\u2192${target}`;
}

// Connections a second on an edge: the client's, or for a client no collector
// watches the server's accepts (the server's edge_status counts either).
export function connectionRate(edge) {
  return (Number(edge.connections_per_s) || 0) + (Number(edge.accepts_per_s) || 0);
}

// The figure an edge is drawn by: its current connection rate when there is
// one, else its totals (an idle edge still shows what it carried).
export function edgeTraffic(edge) {
  const rate = connectionRate(edge);
  if (rate > 0) return { value: rate, rate: true };
  const total = (Number(edge.connections) || 0) + (Number(edge.accepts) || 0);
  return { value: total, rate: false };
}

// Width on a log scale, so one busy edge does not drown the rest. Rates are
// scaled up a little: 1 connection a second is busier than 1 in all.
export function edgeWidth(edge) {
  const { value, rate } = edgeTraffic(edge);
  const n = Math.max(0, rate ? value * 10 : value);
  return Math.min(12, 1.5 + 1.8 * Math.log10(1 + n));
}

// A number short enough for a label: 3, 12.5, 4.2k, 1.3M.
export function shortNumber(value) {
  const n = Number(value) || 0;
  const abs = Math.abs(n);
  // The unit goes up where the rounded figure would reach 1000 ("1000k").
  if (abs >= 999.95e6) return `${(n / 1e9).toFixed(1)}G`;
  if (abs >= 999.5e3) return `${(n / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return abs >= 10 ? n.toFixed(0) : n.toFixed(abs >= 1 ? 1 : 2);
}

export function shortBytes(value) {
  return `${shortNumber(value)}B`;
}

export function edgeLabel(edge) {
  const { value, rate } = edgeTraffic(edge);
  const failedRate = Number(edge.failed_per_s) || 0;
  const failed = Number(edge.failed) || 0;
  let text = rate ? `${shortNumber(value)}/s` : `${shortNumber(value)} conn`;
  if (rate && failedRate) text += ` · ${shortNumber(failedRate)} failed/s`;
  else if (failed) text += ` · ${shortNumber(failed)} failed`;
  return text;
}

// Whether an edge carries traffic right now (any rate above zero).
export function edgeActive(edge) {
  return Object.entries(edge).some(
    ([key, value]) => key.endsWith("_per_s") && Number(value) > 0,
  );
}

// The labels of a container node under well-known keys, for the filters.
export const NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
export const PROJECT_LABEL = "com.docker.compose.project";

// Data of a Cytoscape node; ``parent`` is set separately, once it exists.
export function nodeData(node) {
  const labels = node.labels && typeof node.labels === "object" ? node.labels : {};
  return {
    id: node.id,
    label: String(node.name ?? node.id),
    name: String(node.name ?? node.id),
    kind: String(node.type ?? "unknown"),
    status: String(node.status ?? "unknown"),
    colour: statusColour(node.status),
    // The analyzer's likely-cause rank (0: not ranked): where to start.
    likely: Number.isInteger(node.cause_rank) && node.cause_rank > 0 ? node.cause_rank : 0,
    wantParent: node.parent ?? null,
    namespace: labels[NAMESPACE_LABEL] == null ? "" : String(labels[NAMESPACE_LABEL]),
    project: labels[PROJECT_LABEL] == null ? "" : String(labels[PROJECT_LABEL]),
    image: node.image == null ? "" : String(node.image),
    attrs: node,
  };
}

export function edgeData(edge) {
  return {
    id: edgeId(edge.source, edge.target),
    source: edge.source,
    target: edge.target,
    status: String(edge.status ?? "ok"),
    colour: edge.status === "ok" || !edge.status ? "#7b8797" : statusColour(edge.status),
    width: edgeWidth(edge),
    label: edgeLabel(edge),
    active: edgeActive(edge) ? 1 : 0,
    attrs: edge,
  };
}

// Whether two records from the server say the same: field by field, nested
// values by their JSON (a fleet snapshot compares some 60,000 of them).
function sameJson(a, b) {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    const x = a[key];
    const y = b[key];
    if (x === y) continue;
    if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
    if (JSON.stringify(x) !== JSON.stringify(y)) return false;
  }
  return true;
}

// The diff (in the server's message shape) from the elements shown to a graph.
// Used to apply a snapshot without losing the positions of nodes kept.
export function diffAgainst(shownNodes, shownEdges, graph) {
  const nodes = new Map((graph.nodes || []).map((n) => [n.id, n]));
  const edges = new Map(
    (graph.links || []).map((e) => [edgeId(e.source, e.target), e]),
  );
  const diff = {
    added_nodes: [],
    removed_nodes: [],
    changed_nodes: [],
    added_edges: [],
    removed_edges: [],
    changed_edges: [],
  };
  for (const [id, node] of nodes) {
    if (!shownNodes.has(id)) diff.added_nodes.push(node);
    else if (!sameJson(shownNodes.get(id), node)) diff.changed_nodes.push(node);
  }
  for (const id of shownNodes.keys()) {
    if (!nodes.has(id)) diff.removed_nodes.push(id);
  }
  for (const [id, edge] of edges) {
    if (!shownEdges.has(id)) diff.added_edges.push(edge);
    else if (!sameJson(shownEdges.get(id), edge)) diff.changed_edges.push(edge);
  }
  for (const [id, edge] of shownEdges) {
    if (!edges.has(id)) diff.removed_edges.push([edge.source, edge.target]);
  }
  return diff;
}

export const MAP_STYLE = [
  {
    selector: "node",
    style: {
      label: "data(label)",
      "background-color": "data(colour)",
      "border-width": 2,
      "border-color": "#ffffff",
      width: 30,
      height: 30,
      // Cytoscape accepts no single quotes here.
      "font-family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
      "font-size": 14,
      color: "#1f2a37",
      "text-valign": "bottom",
      "text-halign": "center",
      "text-margin-y": 5,
      "text-wrap": "ellipsis",
      "text-max-width": 160,
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.85,
      "text-background-padding": 2,
      "text-background-shape": "roundrectangle",
      "min-zoomed-font-size": 6,
    },
  },
  {
    selector: "node[kind = 'container']",
    style: { shape: "round-rectangle", width: 34, height: 34 },
  },
  {
    selector: "node[kind = 'process']",
    style: { shape: "ellipse", width: 24, height: 24 },
  },
  {
    selector: "node[kind = 'service']",
    style: { shape: "round-tag", width: 22, height: 22, "font-size": 11 },
  },
  {
    selector: "node[kind = 'external']",
    style: {
      shape: "diamond",
      "background-color": "#ffffff",
      "border-color": "#7b8797",
      "border-width": 2,
      "border-style": "dashed",
    },
  },
  {
    selector: "node[kind = 'host']",
    style: { shape: "round-rectangle", width: 44, height: 44 },
  },
  {
    // A host that holds containers: a labelled frame around them.
    selector: ":parent",
    style: {
      shape: "round-rectangle",
      "background-color": "#eef2f7",
      "background-opacity": 1,
      "border-width": 2,
      "border-color": "data(colour)",
      "border-opacity": 0.9,
      padding: 28,
      "text-valign": "top",
      "text-halign": "center",
      "text-margin-y": -6,
      "font-size": 15,
      "font-weight": 600,
      color: "#334155",
      "text-background-opacity": 0,
    },
  },
  {
    // A container that holds services, inside its host's frame.
    selector: ":parent[kind != 'host']",
    style: {
      "background-color": "#ffffff",
      padding: 18,
      "font-size": 12,
      "font-weight": 500,
    },
  },
  {
    selector: "edge",
    style: {
      width: "data(width)",
      "line-color": "data(colour)",
      "target-arrow-color": "data(colour)",
      "target-arrow-shape": "triangle",
      "arrow-scale": 1.1,
      "curve-style": "bezier",
      opacity: 0.9,
      label: "data(label)",
      "font-size": 11,
      color: "#475569",
      // Upright labels in the middle of the edge: rotated ones cover short
      // vertical edges and their arrows.
      "text-rotation": "none",
      "text-background-color": "#f6f8fb",
      "text-background-opacity": 0.9,
      "text-background-padding": 1,
      "min-zoomed-font-size": 7,
    },
  },
  {
    selector: "edge[status = 'critical']",
    style: { "line-style": "dashed" },
  },
  {
    // A likely cause (ranked by the analyzer): a double ring, thickest for
    // the first, where to start.
    selector: "node[likely > 0]",
    style: {
      "border-color": "#7c3aed",
      "border-width": 4,
      "border-style": "double",
      "underlay-color": "#7c3aed",
      "underlay-opacity": 0.12,
      "underlay-padding": 6,
    },
  },
  {
    selector: "node[likely = 1]",
    style: { "border-width": 7, "underlay-opacity": 0.25, "underlay-padding": 10 },
  },
  {
    selector: ":selected",
    style: {
      "overlay-color": "#2563eb",
      "overlay-opacity": 0.12,
      "overlay-padding": 6,
    },
  },
  {
    selector: "node:selected",
    style: { "border-color": "#2563eb", "border-width": 3 },
  },
  {
    selector: "edge[active = 0]",
    style: { opacity: 0.55 },
  },
  {
    selector: ".faded",
    style: { opacity: 0.2 },
  },
  {
    selector: ".match",
    style: { "border-color": "#2563eb", "border-width": 4 },
  },
  {
    // The host or container the view was opened on.
    selector: "node.focus",
    style: { "border-color": "#2563eb", "border-width": 3, "border-style": "solid" },
  },
  {
    selector: ".hidden",
    style: { display: "none" },
  },
];

// Node ids are made by collector/schema.py (kind:part:part, each part
// percent-quoted); these read them without re-quoting any part.
export function nodeKind(id) {
  return String(id).split(":", 1)[0];
}

// The host node a node id belongs to, or null (externals, malformed ids).
export function hostOf(id) {
  const parts = String(id).split(":");
  const kind = parts[0];
  if (kind === "host") return id;
  if ((kind === "container" || kind === "process") && parts.length === 3) {
    return `host:${parts[1]}`;
  }
  if (kind === "service") {
    const owner = ownerOf(id);
    return owner ? hostOf(owner) : null;
  }
  return null;
}

// The container or process a service node id belongs to.
export function ownerOf(id) {
  const parts = String(id).split(":");
  if (parts[0] !== "service" || parts.length !== 3) return null;
  try {
    return decodeURIComponent(parts[1]);
  } catch {
    return null;
  }
}

// A readable name from an id alone, for nodes not on the map right now.
export function nameFromId(id) {
  const parts = String(id).split(":");
  const last = parts[parts.length - 1] || String(id);
  try {
    const name = decodeURIComponent(last);
    return parts[0] === "container" ? name.slice(0, 12) : name;
  } catch {
    return last;
  }
}
