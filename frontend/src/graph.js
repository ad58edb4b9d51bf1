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

// Width on a log scale, so one busy edge does not drown the rest.
export function edgeWidth(connections) {
  const n = Math.max(0, Number(connections) || 0);
  return Math.min(12, 1.5 + 1.8 * Math.log10(1 + n));
}

export function edgeLabel(edge) {
  const conns = Number(edge.connections) || 0;
  const failed = Number(edge.failed) || 0;
  const text = `${conns} conn`;
  return failed ? `${text} · ${failed} failed` : text;
}

// Data of a Cytoscape node; ``parent`` is set separately, once it exists.
export function nodeData(node) {
  return {
    id: node.id,
    label: String(node.name ?? node.id),
    name: String(node.name ?? node.id),
    kind: String(node.type ?? "unknown"),
    status: String(node.status ?? "unknown"),
    colour: statusColour(node.status),
    wantParent: node.parent ?? null,
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
    width: edgeWidth(edge.connections),
    label: edgeLabel(edge),
    attrs: edge,
  };
}

function sameJson(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
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
    selector: ".faded",
    style: { opacity: 0.25 },
  },
];
