"""Reading the container graph's contract attributes the way the rules and the
analysis memory both need them: metrics as numbers, edge rates, whether an
edge carries traffic and whether its client can be sending at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from webapp.anomalies.keys import edge_target

__all__ = [
    "NOT_RUNNING",
    "carries_traffic",
    "cannot_be_sending",
    "edge_rate",
    "edges_with_targets",
    "metrics_of",
    "node_name",
    "nodes_of_type",
    "number",
]

NOT_RUNNING = ("exited", "dead", "created", "paused")
# Rates of an edge any of which, above zero, means it carried traffic.
ACTIVITY_RATES = ("connections_per_s", "accepts_per_s", "bytes_sent_per_s",
                  "bytes_received_per_s")


def node_name(G: nx.DiGraph, node: str) -> str:
    """The node's display name, else its id."""
    return str(G.nodes[node].get("name") or node) if node in G else node


def nodes_of_type(G: nx.DiGraph, *types: str) -> Iterator[tuple[str, dict]]:
    """``(node, data)`` of every node whose ``type`` is one of ``types``."""
    for n, data in G.nodes(data=True):
        if data.get("type") in types:
            yield n, data


def edges_with_targets(G: nx.DiGraph) -> Iterator[tuple[str, str, str, dict]]:
    """``(u, v, edge_target(u, v), data)`` of every edge."""
    for u, v, data in G.edges(data=True):
        yield u, v, edge_target(u, v), data


def metrics_of(data: dict) -> dict:
    """A node's metrics, empty when it has none."""
    return data.get("metrics") or {}


def number(value) -> float | None:
    """A metric as a float, None when it is missing or not a number.

    >>> number(3), number("3"), number(None)
    (3.0, None, None)
    """
    return float(value) if isinstance(value, int | float) else None


def edge_rate(data: dict, metric: str) -> float:
    """An edge's ``connections_per_s`` or ``bytes_per_s`` (both directions).

    >>> edge_rate({"bytes_sent_per_s": 10, "bytes_received_per_s": 5}, "bytes_per_s")
    15.0
    """
    if metric == "bytes_per_s":
        return float((data.get("bytes_sent_per_s") or 0)
                     + (data.get("bytes_received_per_s") or 0))
    return float(data.get(metric) or 0)


def carries_traffic(data: dict) -> bool:
    """Whether an edge had any connects, accepts or bytes in its last interval."""
    return any((data.get(k) or 0) > 0 for k in ACTIVITY_RATES)


def cannot_be_sending(client: dict) -> bool:
    """A client that cannot be sending: stopped, or a container without a
    record (removed, or recreated under a new id) whose old flows linger."""
    if client.get("state") in NOT_RUNNING:
        return True
    return client.get("type") == "container" and client.get("state") is None
