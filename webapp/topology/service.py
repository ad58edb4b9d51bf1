"""The web tier's door to the topology: Redis client, current graph, JSON.

Views, consumers and commands call these; none of them reads Redis keys or
builds graphs itself.
"""

from __future__ import annotations

import functools
import time

import networkx as nx
import redis
from django.conf import settings

from collector.schema import Keys
from webapp.topology.graph import LEVELS, build_graph
from webapp.topology.store import live_collectors, read_state

__all__ = [
    "LEVELS",
    "current_graph",
    "graph_payload",
    "health",
    "keys",
    "redis_client",
]


@functools.cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=3.0
    )


def keys() -> Keys:
    return Keys(settings.PORTOLAN["KEY_PREFIX"])


def current_graph(level: str = "container") -> nx.DiGraph:
    """The live graph at ``level`` from every host reporting now."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    ttl = settings.PORTOLAN["NODE_TTL"]
    return build_graph(read_state(redis_client(), keys(), ttl), level)


def graph_payload(G: nx.DiGraph) -> dict:
    """NetworkX node-link data: the JSON form of a graph for APIs and sockets."""
    return nx.node_link_data(G, edges="links")


def health() -> tuple[bool, dict]:
    """Whether Redis answers, and which collectors reported recently."""
    ttl = settings.PORTOLAN["COLLECTOR_TTL"]
    try:
        client = redis_client()
        client.ping()
        collectors = live_collectors(client, keys(), ttl)
    except (redis.RedisError, OSError) as exc:
        return False, {"redis": "unreachable", "error": str(exc), "collectors": []}
    now = time.time()
    return True, {
        "redis": "ok",
        "collectors": [
            {"host": host, "seconds_ago": round(now - seen, 3)}
            for host, seen in sorted(collectors.items())
        ],
    }
