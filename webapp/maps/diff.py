"""What changed between two node-link graphs: the map socket's ``diff`` message.

Pure functions over the JSON form of a graph (``service.graph_payload``), so
the consumer sends only changes and tests need neither Redis nor Channels.
Nodes are matched by ``id``, edges by ``(source, target)``. A changed node or
edge is sent whole (``changed_nodes``, ``changed_edges``), or, in a partial
diff, as only the keys whose values changed (``updated_nodes``: ``id`` and
those keys; ``updated_links``: ``source``, ``target`` and those keys), which
the client merges into what it holds: at 50,000 edges whose counters all
move, a whole edge is about four times its changes. A key that disappears
still sends the whole node or edge. A node's ``metrics`` (a container's
~22 cgroup figures, most of them moving every report) go in a partial diff
as only the figures that moved (``updated_metrics``: ``id`` and ``metrics``,
merged into the node's own ``metrics``): at 10,000 containers whose CPU and
memory move every second, a whole metrics dict is about twice its changes.
Messages without the ``updated_*`` fields (older builders) mean the same as
before; a web tier older than the builder ignores ``updated_metrics`` (its
maps' hover cards keep the figures of the last snapshot).
"""

from __future__ import annotations

import json
from itertools import filterfalse

import orjson

__all__ = [
    "DIFF_FIELDS",
    "apply_diff",
    "apply_diff_to",
    "changed_keys",
    "empty_diff",
    "encode_diff",
    "encode_snapshot",
    "graph_diff",
    "is_empty",
    "node_update",
    "split_diff",
    "split_snapshot",
]

DIFF_FIELDS = (
    "added_nodes",
    "removed_nodes",
    "changed_nodes",
    "updated_nodes",
    "updated_metrics",
    "added_edges",
    "removed_edges",
    "changed_edges",
    "updated_links",
)
_ENDS = ("source", "target")


def _nodes(payload: dict) -> dict:
    return {node["id"]: node for node in payload.get("nodes", [])}


def _edges(payload: dict) -> dict:
    return {(e["source"], e["target"]): e for e in payload.get("links", [])}


def changed_keys(old: dict, new: dict, keep: tuple = ("id",)) -> dict | None:
    """``new``'s keys ``keep`` and those whose values differ from ``old``'s;
    None when ``new`` lacks a key of ``old`` (a partial update cannot remove).

    >>> changed_keys({"id": "x", "a": 1, "b": 2}, {"id": "x", "a": 1, "b": 3})
    {'id': 'x', 'b': 3}
    """
    if not old.keys() <= new.keys():
        return None
    out = {k: new[k] for k in keep}
    out.update((k, v) for k, v in new.items()
               if k not in out and (k not in old or old[k] != v))
    return out


def graph_diff(old: dict, new: dict, partial: bool = False) -> dict:
    """The ``diff`` message that turns node-link graph ``old`` into ``new``.

    Lists are sorted by id so that equal inputs give equal messages. With
    ``partial``, changed nodes and edges carry only their changed keys
    (``updated_nodes``, ``updated_links``) where they can.

    >>> a = {"nodes": [{"id": "x", "status": "ok"}], "links": []}
    >>> b = {"nodes": [{"id": "x", "status": "critical"}, {"id": "y"}],
    ...      "links": [{"source": "y", "target": "x", "connections": 1}]}
    >>> d = graph_diff(a, b)
    >>> [n["id"] for n in d["added_nodes"]], [n["id"] for n in d["changed_nodes"]]
    (['y'], ['x'])
    >>> d["added_edges"][0]["source"], d["removed_nodes"]
    ('y', [])
    >>> graph_diff(a, b, partial=True)["updated_nodes"]
    [{'id': 'x', 'status': 'critical'}]
    """
    old_nodes, new_nodes = _nodes(old), _nodes(new)
    old_edges, new_edges = _edges(old), _edges(new)
    diff = empty_diff()
    diff["added_nodes"] = [new_nodes[n] for n in sorted(new_nodes.keys() - old_nodes)]
    diff["removed_nodes"] = sorted(old_nodes.keys() - new_nodes)
    diff["added_edges"] = [new_edges[e] for e in sorted(new_edges.keys() - old_edges)]
    diff["removed_edges"] = [list(e) for e in sorted(old_edges.keys() - new_edges)]
    for n in sorted(new_nodes.keys() & old_nodes):
        if new_nodes[n] != old_nodes[n]:
            _add_change(diff, "nodes", old_nodes[n], new_nodes[n], partial)
    for e in sorted(new_edges.keys() & old_edges):
        if new_edges[e] != old_edges[e]:
            _add_change(diff, "edges", old_edges[e], new_edges[e], partial)
    return diff


def _add_change(diff: dict, kind: str, old: dict, new: dict, partial: bool) -> None:
    """Put one changed node or edge in ``diff``: its changes, or itself whole."""
    if partial:
        keep = ("id",) if kind == "nodes" else _ENDS
        update = changed_keys(old, new, keep)
        if update is not None:
            if kind == "nodes":
                node_update(diff, old, update)
            else:
                diff["updated_links"].append(update)
            return
    diff["changed_nodes" if kind == "nodes" else "changed_edges"].append(new)


def node_update(diff: dict, old: dict, update: dict) -> None:
    """Put node ``old``'s partial ``update`` (``id`` and its changed keys) in
    ``diff``: a new ``metrics`` as only the figures that moved
    (``updated_metrics``) when it keeps every figure ``old`` had, the rest
    in ``updated_nodes``.

    >>> d = empty_diff()
    >>> node_update(d, {"id": "x", "metrics": {"cpu": 1, "pids": 3}},
    ...             {"id": "x", "metrics": {"cpu": 2, "pids": 3}})
    >>> d["updated_metrics"], d["updated_nodes"]
    ([{'id': 'x', 'metrics': {'cpu': 2}}], [])
    """
    metrics, before = update.get("metrics"), old.get("metrics")
    if (isinstance(metrics, dict) and isinstance(before, dict)
            and before.keys() <= metrics.keys()):
        # As ``changed_keys(before, metrics, keep=())``, filtered in C: the
        # builder does this for every container of a reporting host.
        moved = dict(filterfalse(before.items().__contains__, metrics.items()))
        update = {k: v for k, v in update.items() if k != "metrics"}
        if moved:
            diff["updated_metrics"].append({"id": update["id"], "metrics": moved})
        if len(update) == 1:  # the id alone: only metrics moved
            return
    diff["updated_nodes"].append(update)


def empty_diff() -> dict:
    """A diff message that changes nothing (every field present, empty)."""
    return {"type": "diff", **{name: [] for name in DIFF_FIELDS}}


def is_empty(diff: dict) -> bool:
    """Whether a diff changes nothing (and so is not worth sending).

    >>> is_empty(graph_diff({"nodes": [{"id": "x"}]}, {"nodes": [{"id": "x"}]}))
    True
    """
    return not any(diff.get(name) for name in DIFF_FIELDS)


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
    apply_diff_to(nodes, edges, diff)
    return {
        **{k: v for k, v in payload.items() if k not in ("nodes", "links")},
        "nodes": [nodes[n] for n in sorted(nodes)],
        "links": [edges[e] for e in sorted(edges)],
    }


def apply_diff_to(nodes: dict, edges: dict, diff: dict) -> None:
    """Apply ``diff`` to ``nodes`` (id -> node) and ``edges`` ((source,
    target) -> edge) in place; the nodes and edges themselves are replaced,
    never changed, so whoever holds one keeps what it was."""
    for node_id in diff.get("removed_nodes", ()):
        nodes.pop(node_id, None)
    for node in (*diff.get("added_nodes", ()), *diff.get("changed_nodes", ())):
        nodes[node["id"]] = node
    for update in diff.get("updated_nodes", ()):
        if update["id"] in nodes:
            nodes[update["id"]] = {**nodes[update["id"]], **update}
    for update in diff.get("updated_metrics", ()):
        node = nodes.get(update["id"])
        if node is not None:
            metrics = node.get("metrics")
            nodes[update["id"]] = {**node, "metrics": {
                **(metrics if isinstance(metrics, dict) else {}), **update["metrics"]}}
    for source, target in diff.get("removed_edges", ()):
        edges.pop((source, target), None)
    for edge in (*diff.get("added_edges", ()), *diff.get("changed_edges", ())):
        edges[(edge["source"], edge["target"])] = edge
    for update in diff.get("updated_links", ()):
        key = (update["source"], update["target"])
        if key in edges:
            edges[key] = {**edges[key], **update}


def _encode_bytes(item) -> bytes:
    """Compact JSON, UTF-8 (orjson: 30 times the standard library's speed on
    a map's items, which are most of what a builder step costs).

    >>> _encode_bytes({"id": "a", "rate": 0.5, "name": "caf\u00e9"}).decode()
    '{"id":"a","rate":0.5,"name":"café"}'
    >>> _encode_bytes({"n": 2**70})
    b'{"n":1180591620717411303424}'
    """
    try:
        return orjson.dumps(item)
    except TypeError:  # an int past 64 bits, a key that is not a string
        return json.dumps(item, separators=(",", ":")).encode()


def _run_json(run: list) -> bytes:
    """The JSON of ``run``'s items, comma-separated (an array without its
    brackets), in one orjson call."""
    try:
        return orjson.dumps(run)[1:-1]
    except TypeError:  # an int past 64 bits, a key that is not a string
        return b",".join(map(_encode_bytes, run))


def _chunks(items: list, limit: int):
    """Consecutive runs of ``items`` as JSON array bodies (``_run_json``),
    each under ``limit`` bytes (or one item that alone is not).

    Each run is encoded in one call, its length guessed from the sizes seen
    so far and shortened when it does not fit: an orjson call and a small
    string per item were most of a snapshot's cost at 50,000 edges (~0.2 s
    of 0.35 s; ``bench/builder_round.py``).

    >>> [b.decode() for b in _chunks([{"id": "a"}, {"id": "b"}, {"id": "c"}], 25)]
    ['{"id":"a"},{"id":"b"}', '{"id":"c"}']
    """
    sample = items[:16]
    if not sample:
        return
    per_item = (len(_run_json(sample)) + 1) / len(sample)
    start = 0
    while start < len(items):
        count = max(1, int(limit * 0.97 / per_item))
        run = items[start:start + count]
        body = _run_json(run)
        while len(body) + 1 > limit and len(run) > 1:
            # Too long: as many items as fit at this run's mean size (fewer
            # than it has), again until it fits.
            fit = len(run) * limit // (len(body) + 1)
            run = run[:max(1, min(len(run) - 1, fit))]
            body = _run_json(run)
        yield body
        start += len(run)
        per_item = (len(body) + 1) / len(run)


def _message(head: dict, fields: dict[str, bytes]) -> bytes:
    """A message's JSON from its plain keys and its fields' array bodies.

    Bytes, as orjson made them: a builder step's messages are tens of MB at
    10,000 containers, and each copy into a ``str`` and back (to store it, to
    compress it into a frame) cost a fresh allocation of that size.
    """
    body = _encode_bytes(head)[:-1]
    parts = [b'"%s":[%s]' % (name.encode(), items) for name, items in fields.items()]
    return body + (b"," if head else b"") + b",".join(parts) + b"}"


def encode_diff(diff: dict, limit: int) -> list[bytes]:
    """``diff`` encoded as one or more diff messages of about ``limit`` bytes
    at most; applied in order they equal the whole: removals, then nodes,
    then edges, so an edge never arrives before its ends.

    >>> d = graph_diff({}, {"nodes": [{"id": "a"}, {"id": "b"}]})
    >>> [json.loads(t)["added_nodes"] for t in encode_diff(d, 10)]
    [[{'id': 'a'}], [{'id': 'b'}]]
    """
    runs = [(name, run) for name in DIFF_FIELDS
            for run in _chunks(diff.get(name, ()), limit)]
    if len(runs) <= 1:
        fields = {name: b"" for name in DIFF_FIELDS}
        for name, run in runs:
            fields[name] = run
        return [_message({"type": "diff"}, fields)]
    messages = []
    for name, run in runs:
        fields = {field: b"" for field in DIFF_FIELDS}
        fields[name] = run
        messages.append(_message({"type": "diff"}, fields))
    return messages


def split_diff(diff: dict, limit: int) -> list[dict]:
    """``diff`` as several diff messages, each under about ``limit`` bytes
    (``encode_diff``, decoded).

    >>> d = graph_diff({}, {"nodes": [{"id": "a"}, {"id": "b"}]})
    >>> [[n["id"] for n in m["added_nodes"]] for m in split_diff(d, 10)]
    [['a'], ['b']]
    """
    return [json.loads(text) for text in encode_diff(diff, limit)]


def encode_snapshot(level: str, payload: dict, limit: int) -> list[bytes]:
    """The snapshot message(s) of node-link ``payload``, encoded (UTF-8 JSON),
    each under about ``limit`` bytes: ``part`` i of ``parts``; the client
    joins them."""
    rest = {k: v for k, v in payload.items() if k not in ("nodes", "links")}
    nodes = list(_chunks(payload.get("nodes", []), limit))
    links = list(_chunks(payload.get("links", []), limit))
    if len(nodes) + len(links) <= 1:
        graphs = [{"nodes": nodes[0] if nodes else b"",
                   "links": links[0] if links else b""}]
    else:
        graphs = ([{"nodes": run, "links": b""} for run in nodes]
                  + [{"nodes": b"", "links": run} for run in links])
    head = b'{"type":"snapshot","level":%s,"graph":' % _encode_bytes(level)
    return [
        b'%s%s,"part":%d,"parts":%d}' % (head, _message(rest, g), i, len(graphs))
        for i, g in enumerate(graphs)
    ]


def split_snapshot(level: str, payload: dict, limit: int) -> list[dict]:
    """The snapshot message(s) of node-link ``payload``, each under about
    ``limit`` bytes: ``part`` i of ``parts``; the client joins them.

    >>> g = {"nodes": [{"id": "a"}, {"id": "b"}], "links": []}
    >>> [(m["part"], m["parts"], len(m["graph"]["nodes"]))
    ...  for m in split_snapshot("host", g, 10)]
    [(0, 2, 1), (1, 2, 1)]
    """
    return [json.loads(t) for t in encode_snapshot(level, payload, limit)]
