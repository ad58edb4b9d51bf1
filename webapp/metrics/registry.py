"""The Prometheus registry /metrics serves, and the collector behind it.

One registry, made once per process; its collector takes the container-level
graph the map draws on each scrape (the graph builder's stored level when the
builder keeps it current, else read from Redis and built here), then hands it
to the pure ``families`` module. Nothing is registered per request.
"""

from __future__ import annotations

import functools
import logging
import time

import networkx as nx
from django.conf import settings
from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.registry import Collector

from collector.redis_client import REDIS_ERRORS
from webapp.builder.keys import GraphKeys
from webapp.builder.stored import stored_client, stored_graph
from webapp.metrics.families import Limits, metric_families, redis_family
from webapp.topology import service
from webapp.topology.graph import build_graph
from webapp.topology.store import live_collectors, parse_host, read_state

log = logging.getLogger("portolan.metrics")

__all__ = ["TopologyCollector", "registry"]


class TopologyCollector(Collector):
    """Reads the live topology once per scrape and yields its metric families."""

    def collect(self):
        conf = settings.PORTOLAN
        limits = Limits(max_edges=settings.PORTOLAN_METRICS["MAX_EDGES"],
                        max_containers=settings.PORTOLAN_METRICS["MAX_CONTAINERS"])
        now = time.time()
        try:
            client, keys = service.redis_client(), service.keys()
            # A silent collector stays listed (up 0, its age growing) as long
            # as its flows are kept, so an alert can see it stop.
            reported = live_collectors(client, keys, conf["FLOW_TTL"], now)
            payload = stored_graph(stored_client(), GraphKeys(keys.prefix),
                                   "container")
            if payload is None:
                state = read_state(client, keys, conf["NODE_TTL"], now)
                G, hosts = build_graph(state, "container"), state.hosts
            else:
                G = nx.node_link_graph(payload, edges="links")
                hosts = _host_records(client, keys, reported)
        except REDIS_ERRORS as exc:  # a cluster raises some outside RedisError
            log.warning("metrics: Redis unreachable: %s", exc)
            yield redis_family(False)
            return
        families: list[Metric] = metric_families(
            G, reported, hosts, now, conf["COLLECTOR_TTL"], limits)
        yield from families


def _host_records(client, keys, host_ids) -> dict:
    """The host records alone (the stored graph has the rest)."""
    host_ids = list(host_ids)
    pipe = client.pipeline(transaction=False)
    for host_id in host_ids:
        pipe.get(keys.host(host_id))
    return {h: parse_host(h, raw)
            for h, raw in zip(host_ids, pipe.execute(), strict=True)}


@functools.cache
def registry() -> CollectorRegistry:
    """The registry of this process: only the topology's families (no process
    or platform collectors, which describe the web worker, not the hosts)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TopologyCollector())
    return registry
