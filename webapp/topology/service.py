"""The web tier's door to the topology: Redis client, current graph, JSON.

Views, consumers and commands call these; none of them reads Redis keys or
builds graphs itself.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import time

import networkx as nx
import redis
from django.conf import settings

from collector.redis_client import REDIS_ERRORS
from collector.redis_client import redis_client as make_client
from collector.schema import Keys, host_of_node, parse_node_id
from webapp.anomalies.failures import read_failures
from webapp.anomalies.history import read_verdict_at
from webapp.anomalies.merge import apply_verdict, read_verdict
from webapp.builder.keys import GraphKeys
from webapp.builder.stored import stored_client, stored_graph
from webapp.topology import details
from webapp.topology.graph import LEVELS, build_graph
from webapp.topology.store import (
    live_collectors,
    read_history,
    read_state,
    read_state_at,
)

log = logging.getLogger("portolan.topology.service")

__all__ = [
    "LEVELS",
    "current_graph",
    "graph_payload",
    "health",
    "keys",
    "level_of",
    "node_details",
    "parse_time",
    "redis_client",
    "rule_failures",
]


@functools.cache
def redis_client() -> redis.Redis:
    """The web tier's client: one Redis or a cluster, per ``REDIS_URL``."""
    return make_client(settings.REDIS_URL, retries=3, socket_connect_timeout=1.0,
                       socket_timeout=3.0)


def keys() -> Keys:
    return Keys(settings.PORTOLAN["KEY_PREFIX"])


def current_graph(level: str = "container", at: float | None = None) -> nx.DiGraph:
    """The graph at ``level``: live, or as it was at unix time ``at``."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    conf = settings.PORTOLAN
    if at is not None:
        state = read_state_at(redis_client(), keys(), at, conf["HISTORY_STEP"],
                              conf["HISTORY_COARSE_STEP"])
        # The statuses, reasons and likely causes the analyzer published
        # then, not today's rules run again.
        return apply_verdict(build_graph(state, level),
                             read_verdict_at(redis_client(), at, keys().prefix))
    state = read_state(redis_client(), keys(), conf["NODE_TTL"])
    # The analyzer's statuses, reasons and likely causes colour the live map
    # (as the graph builder does): the same verdict, or "unknown" without one.
    return apply_verdict(build_graph(state, level),
                         read_verdict(redis_client(), keys().prefix))


def parse_time(text: str) -> float:
    """An ISO 8601 time (UTC when no zone is given) or unix seconds, as unix time.

    >>> parse_time("1970-01-01T00:01:00Z")
    60.0
    """
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # nan would pass any range check and reach Redis as a bad score.
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite time: {text!r}")
        return seconds
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def level_of(node_id: str) -> str:
    """The zoom level whose graph holds a node of this id."""
    kind, _ = parse_node_id(node_id)
    return {"host": "host", "service": "service"}.get(kind, "container")


def node_details(node_id: str, window: float = 900.0,
                 at: float | None = None) -> dict:
    """The details panel's data for one node, live or at unix time ``at``
    (series up to then); KeyError when the node is not on that map.

    Live, the node and its edges come from the graph builder's stored level
    while the builder keeps it current, as ``/api/graph/`` does: at 10,000
    containers, reading every host and building the graph took ~0.8 s of a
    web worker's CPU (``bench/node_api.py``), and an open panel asks every 2 s."""
    level = level_of(node_id)
    stored = None
    if at is None:
        stored = stored_graph(stored_client(), GraphKeys(keys().prefix), level)
    found = (details.node_and_edges(current_graph(level, at), node_id)
             if stored is None else details.node_and_edges_in(stored, node_id))
    host = host_of_node(node_id)
    until = time.time() if at is None else at
    snapshots = []
    if host is not None:
        snapshots = read_history(redis_client(), keys(), host, until - window,
                                 until)
    body = details.node_details(node_id, found, snapshots)
    body["at"] = at  # the panel marks it on the series
    return body


def graph_payload(G: nx.DiGraph) -> dict:
    """NetworkX node-link data: the JSON form of a graph for APIs and sockets."""
    return nx.node_link_data(G, edges="links")


def rule_failures() -> list[dict]:
    """The analyzer's rule checks that raised lately, the latest first
    (``webapp.anomalies.failures``)."""
    return read_failures(redis_client(), keys().prefix)


def health() -> tuple[bool, dict]:
    """Whether Redis answers, which collectors reported recently and which
    rule checks of the analyzer raised lately."""
    ttl = settings.PORTOLAN["COLLECTOR_TTL"]
    try:
        client = redis_client()
        client.ping()
        collectors = live_collectors(client, keys(), ttl)
        failures = rule_failures()
    except REDIS_ERRORS as exc:
        # /healthz needs no login: the details (Redis' address) go to the log.
        log.warning("health check: Redis unreachable: %s", exc)
        return False, {"redis": "unreachable", "error": "Redis unreachable",
                       "collectors": []}
    now = time.time()
    return True, {
        "redis": "ok",
        "collectors": [
            {"host": host, "seconds_ago": round(now - seen, 3)}
            for host, seen in sorted(collectors.items())
        ],
        "rule_failures": failures,
    }
