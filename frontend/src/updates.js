// The builder's partial updates merged into what the page holds (pure: no
// Cytoscape, no DOM; bench/metric_diffs.mjs runs it in node).

import { edgeId } from "./graph.js";

// A diff whose partial updates (``updated_nodes``/``updated_links``: an id
// and only the keys that changed) are merged into the nodes and edges the
// model holds, as whole changed ones: the rest of the map needs no change.
// A node's moved figures (``updated_metrics``) go into the node the model
// holds, in place (its ``metrics`` replaced, never changed): only the hover
// card and the details panel read them, and at 10,000 containers whose CPU
// and memory move every second, a changed node each would re-sum and
// restyle the map every second for nothing it draws. A host's go the first
// way: its tile's card is a copy made when the tile is drawn. The nodes
// changed in place are pushed on ``inPlace``.
export function mergeUpdates(diff, model, inPlace) {
  const byId = new Map();
  for (const update of diff.updated_nodes || []) {
    const node = byId.get(update.id) || model.nodes.get(update.id);
    if (node) byId.set(update.id, { ...node, ...update });
  }
  for (const update of diff.updated_metrics || []) {
    const held = model.nodes.get(update.id);
    const node = byId.get(update.id) || held;
    if (!node || !update.metrics || typeof update.metrics !== "object") continue;
    const metrics = node.metrics && typeof node.metrics === "object" ? node.metrics : {};
    if (node === held && node.type !== "host") {
      node.metrics = { ...metrics, ...update.metrics };
      inPlace.push(node);
    } else {
      byId.set(update.id, { ...node, metrics: { ...metrics, ...update.metrics } });
    }
  }
  if (!byId.size && !diff.updated_links?.length) return diff;
  const edges = [];
  for (const update of diff.updated_links || []) {
    const edge = model.edges.get(edgeId(update.source, update.target));
    if (edge) edges.push({ ...edge, ...update });
  }
  return {
    ...diff,
    changed_nodes: [...(diff.changed_nodes || []), ...byId.values()],
    changed_edges: [...(diff.changed_edges || []), ...edges],
  };
}
