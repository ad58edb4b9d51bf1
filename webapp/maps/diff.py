"""What changed between two node-link graphs: the map socket's ``diff`` message.

Pure functions over the JSON form of a graph (``service.graph_payload``), so
the consumer sends only changes and tests need neither Redis nor Channels.
Nodes are matched by ``id``, edges by ``(source, target)``; a changed node or
edge is sent whole, in its new form.
"""

from __future__ import annotations

import json

__all__ = [
    "DIFF_FIELDS",
    "apply_diff",
    "graph_diff",
    "is_empty",
    "split_diff",
    "split_snapshot",
]

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


def _size(item) -> int:
    return len(json.dumps(item, separators=(",", ":")))


def _chunks(items: list, limit: int):
    """Consecutive runs of ``items`` whose JSON stays under ``limit`` bytes."""
    run, size = [], 0
    for item in items:
        n = _size(item) + 1
        if run and size + n > limit:
            yield run
            run, size = [], 0
        run.append(item)
        size += n
    if run:
        yield run


def split_diff(diff: dict, limit: int) -> list[dict]:
    """``diff`` as several diff messages, each under about ``limit`` bytes.

    Applied in order they equal the whole: removals, then nodes, then edges,
    so an edge never arrives before its ends.

    >>> d = graph_diff({}, {"nodes": [{"id": "a"}, {"id": "b"}]})
    >>> [[n["id"] for n in m["added_nodes"]] for m in split_diff(d, 10)]
    [['a'], ['b']]
    """
    parts = []
    for name in DIFF_FIELDS:
        for run in _chunks(diff[name], limit):
            part = {"type": "diff", **{field: [] for field in DIFF_FIELDS}}
            part[name] = run
            parts.append(part)
    if len(parts) <= 1:
        return [diff]
    return parts


def split_snapshot(level: str, payload: dict, limit: int) -> list[dict]:
    """The snapshot message(s) of node-link ``payload``, each under about
    ``limit`` bytes: ``part`` i of ``parts``; the client joins them.

    >>> g = {"nodes": [{"id": "a"}, {"id": "b"}], "links": []}
    >>> [(m["part"], m["parts"], len(m["graph"]["nodes"]))
    ...  for m in split_snapshot("host", g, 10)]
    [(0, 2, 1), (1, 2, 1)]
    """
    rest = {k: v for k, v in payload.items() if k not in ("nodes", "links")}
    graphs = [
        {**rest, "nodes": run, "links": []}
        for run in _chunks(payload.get("nodes", []), limit)
    ] + [
        {**rest, "nodes": [], "links": run}
        for run in _chunks(payload.get("links", []), limit)
    ]
    if len(graphs) <= 1:
        graphs = [{**rest, "nodes": payload.get("nodes", []),
                   "links": payload.get("links", [])}]
    return [
        {"type": "snapshot", "level": level, "graph": g, "part": i,
         "parts": len(graphs)}
        for i, g in enumerate(graphs)
    ]
