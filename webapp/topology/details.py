"""One node's details for the map's panel: series, edges, events, processes.

Pure functions over a graph and a host's history snapshots (decoded
``collector.schema`` snapshots), so the panel's numbers are tested without a
browser or Redis.
"""

from __future__ import annotations

import networkx as nx

from collector.schema import SchemaError, parse_flow_field, parse_node_id

__all__ = ["SERIES", "node_and_edges", "node_and_edges_in", "node_details",
           "node_events", "node_series"]

# Series the panel draws, in order.
SERIES = (
    "connections_per_s_out",
    "connections_per_s_in",
    "failed_per_s_out",
    "bytes_per_s_out",
    "bytes_per_s_in",
    "cpu_cores",
    "memory_bytes",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
)

# Container metrics (ContainerRecord.metrics) -> series name.
_METRIC_SERIES = {
    "cpu_cores": "cpu_cores",
    "memory_working_set_bytes": "memory_bytes",
    "net_rx_bytes_per_s": "net_rx_bytes_per_s",
    "net_tx_bytes_per_s": "net_tx_bytes_per_s",
}


def _owner(node_id: str) -> str:
    """The container or process a node id belongs to (services roll up)."""
    kind, parts = parse_node_id(node_id)
    return parts[0] if kind == "service" else node_id


def _container_id(node_id: str) -> str | None:
    kind, parts = parse_node_id(_owner(node_id))
    return parts[1] if kind == "container" else None


def node_series(node_id: str, snapshots: list[dict]) -> dict[str, list]:
    """Per-snapshot series for one node: its traffic rates and its metrics.

    ``out`` rates are the node's own client flows; ``in`` rates are the server
    side its host recorded (accepts and their bytes).

    >>> snap = {"ts": 5.0, "containers": [], "rates": {
    ...     "container:h:c\\tout\\t10.0.0.2\\t80\\ttcp\\tconnections": 2.5}}
    >>> node_series("container:h:c", [snap])["connections_per_s_out"]
    [2.5]
    """
    owner = _owner(node_id)
    cid = _container_id(node_id)
    series: dict[str, list] = {"ts": []}
    for name in SERIES:
        series[name] = []
    for snap in snapshots:
        series["ts"].append(snap["ts"])
        sums = dict.fromkeys(SERIES[:5], 0.0)
        for field, rate in (snap.get("rates") or {}).items():
            try:
                key, counter = parse_flow_field(field)
            except SchemaError:
                continue
            if key.node != owner:
                continue
            if key.direction == "out":
                if counter == "connections":
                    sums["connections_per_s_out"] += rate
                elif counter == "failed":
                    sums["failed_per_s_out"] += rate
                elif counter in ("bytes_sent", "bytes_received"):
                    sums["bytes_per_s_out"] += rate
            else:
                if counter == "accepts":
                    sums["connections_per_s_in"] += rate
                elif counter in ("bytes_sent", "bytes_received"):
                    sums["bytes_per_s_in"] += rate
        for name, value in sums.items():
            series[name].append(round(value, 3))
        metrics = {}
        for record in snap.get("containers") or []:
            if record.get("id") == cid:
                metrics = record.get("metrics") or {}
                break
        for source, name in _METRIC_SERIES.items():
            series[name].append(metrics.get(source))
    return series


def node_events(node_id: str, snapshots: list[dict]) -> list[dict]:
    """State changes of a container seen across snapshots, oldest first.

    >>> a = {"ts": 1, "containers": [{"id": "c", "state": "running"}]}
    >>> b = {"ts": 2, "containers": [{"id": "c", "state": "exited",
    ...                               "exit_code": 137}]}
    >>> node_events("container:h:c", [a, b])[0]["message"]
    'exited with code 137'
    """
    cid = _container_id(node_id)
    if cid is None:
        return []
    events, previous, ooms = [], None, None
    for snap in snapshots:
        record = next((r for r in snap.get("containers") or []
                       if r.get("id") == cid), None)
        state = record.get("state") if record else "removed"
        if previous is not None and state != previous:
            if state == "exited":
                message = f"exited with code {record.get('exit_code', 0)}"
            elif state == "running" and previous in ("exited", "restarting"):
                message = "restarted"
            else:
                message = f"{previous} -> {state}"
            events.append({"ts": snap["ts"], "kind": state, "message": message})
        kills = ((record or {}).get("metrics") or {}).get("memory_oom_kills")
        if kills is not None and ooms is not None and kills > ooms:
            events.append({"ts": snap["ts"], "kind": "oom",
                           "message": f"OOM killed ({kills - ooms} process(es))"})
        ooms = kills if kills is not None else ooms
        previous = state
    return events


def node_and_edges(G: nx.DiGraph, node_id: str) -> tuple[dict, list, list]:
    """``node_id``'s attributes, inbound and outbound edges in graph ``G``
    (KeyError if absent)."""
    attrs = dict(G.nodes[node_id])

    def edge(u, v):
        return {"source": u, "target": v, **G.edges[u, v]}

    return (attrs, [edge(u, node_id) for u in G.predecessors(node_id)],
            [edge(node_id, v) for v in G.successors(node_id)])


def node_and_edges_in(payload: dict, node_id: str) -> tuple[dict, list, list]:
    """``node_and_edges`` from a node-link ``payload`` (the graph builder's
    stored level): no graph is built, the links are scanned once. A link
    from the node to itself is both inbound and outbound, as in a graph.

    >>> p = {"nodes": [{"id": "host:a", "type": "host"}, {"id": "host:b"}],
    ...      "links": [{"source": "host:b", "target": "host:a", "connections": 3},
    ...                {"source": "host:a", "target": "host:a"}]}
    >>> attrs, inbound, outbound = node_and_edges_in(p, "host:a")
    >>> attrs["type"], [e["source"] for e in inbound], outbound
    ('host', ['host:b', 'host:a'], [{'source': 'host:a', 'target': 'host:a'}])
    """
    attrs = next((dict(n) for n in payload.get("nodes", ())
                  if n.get("id") == node_id), None)
    if attrs is None:
        raise KeyError(node_id)
    inbound, outbound = [], []
    for link in payload.get("links", ()):
        if link.get("target") == node_id:
            inbound.append(dict(link))
        if link.get("source") == node_id:
            outbound.append(dict(link))
    return attrs, inbound, outbound


def node_details(node_id: str, found: tuple[dict, list, list],
                 snapshots: list[dict]) -> dict:
    """The panel's JSON for ``node_id``: ``found`` is its attributes and
    edges (``node_and_edges``), ``snapshots`` its host's history."""
    attrs, inbound, outbound = found
    processes = []
    cid = _container_id(node_id) if attrs.get("type") in ("container",
                                                          "service") else None
    if cid and snapshots:
        for record in snapshots[-1].get("containers") or []:
            if record.get("id") == cid:
                processes = list(record.get("processes") or [])
    return {
        "node": attrs,
        "series": node_series(node_id, snapshots) if attrs.get("type") in (
            "container", "service", "process") else {"ts": []},
        "inbound": inbound,
        "outbound": outbound,
        "events": node_events(node_id, snapshots),
        "processes": processes,
    }
