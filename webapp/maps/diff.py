"""What changed between two node-link graphs: the map socket's ``diff`` message.

Pure functions over the JSON form of a graph (``service.graph_payload``), so
the consumer sends only changes and tests need neither Redis nor Channels.
Nodes are matched by ``id``, edges by ``(source, target)``; a changed node or
edge is sent whole, in its new form.
"""

from __future__ import annotations

__all__ = ["DIFF_FIELDS", "apply_diff", "graph_diff", "is_empty"]

DIFF_FIELDS = (
    "added_nodes",
    "removed_nodes",
    "changed_nodes",
    "added_edges",
    "removed_edges",
    "changed_edges",
)


def _nodes(payload: dict) -> dict:
    return {node["id"]: node for node in payload.get("nodes", [])}


def _edges(payload: dict) -> dict:
    return {(e["source"], e["target"]): e for e in payload.get("links", [])}


def graph_diff(old: dict, new: dict) -> dict:
    """The ``diff`` message that turns node-link graph ``old`` into ``new``.

    Lists are sorted by id so that equal inputs give equal messages.

    >>> a = {"nodes": [{"id": "x", "status": "ok"}], "links": []}
    >>> b = {"nodes": [{"id": "x", "status": "critical"}, {"id": "y"}],
    ...      "links": [{"source": "y", "target": "x", "connections": 1}]}
    >>> d = graph_diff(a, b)
    >>> [n["id"] for n in d["added_nodes"]], [n["id"] for n in d["changed_nodes"]]
    (['y'], ['x'])
    >>> d["added_edges"][0]["source"], d["removed_nodes"]
    ('y', [])
    """
    old_nodes, new_nodes = _nodes(old), _nodes(new)
    old_edges, new_edges = _edges(old), _edges(new)
    return {
        "type": "diff",
        "added_nodes": [new_nodes[n] for n in sorted(new_nodes.keys() - old_nodes)],
        "removed_nodes": sorted(old_nodes.keys() - new_nodes),
        "changed_nodes": [
            new_nodes[n]
            for n in sorted(new_nodes.keys() & old_nodes)
            if new_nodes[n] != old_nodes[n]
        ],
        "added_edges": [new_edges[e] for e in sorted(new_edges.keys() - old_edges)],
        "removed_edges": [list(e) for e in sorted(old_edges.keys() - new_edges)],
        "changed_edges": [
            new_edges[e]
            for e in sorted(new_edges.keys() & old_edges)
            if new_edges[e] != old_edges[e]
        ],
    }


def is_empty(diff: dict) -> bool:
    """Whether a diff changes nothing (and so is not worth sending).

    >>> is_empty(graph_diff({"nodes": [{"id": "x"}]}, {"nodes": [{"id": "x"}]}))
    True
    """
    return not any(diff[name] for name in DIFF_FIELDS)


def apply_diff(payload: dict, diff: dict) -> dict:
    """A new node-link graph: ``payload`` with ``diff`` applied.

    The inverse of ``graph_diff``: ``apply_diff(a, graph_diff(a, b))`` has the
    nodes and edges of ``b`` (in id order).

    >>> a = {"nodes": [{"id": "x"}], "links": []}
    >>> b = {"nodes": [{"id": "y"}], "links": []}
    >>> apply_diff(a, graph_diff(a, b))["nodes"]
    [{'id': 'y'}]
    """
    nodes = _nodes(payload)
    edges = _edges(payload)
    for node_id in diff["removed_nodes"]:
        nodes.pop(node_id, None)
    for node in (*diff["added_nodes"], *diff["changed_nodes"]):
        nodes[node["id"]] = node
    for source, target in diff["removed_edges"]:
        edges.pop((source, target), None)
    for edge in (*diff["added_edges"], *diff["changed_edges"]):
        edges[(edge["source"], edge["target"])] = edge
    return {
        **{k: v for k, v in payload.items() if k not in ("nodes", "links")},
        "nodes": [nodes[n] for n in sorted(nodes)],
        "links": [edges[e] for e in sorted(edges)],
    }
