"""Prometheus metric families from the container-level graph, as pure functions.

The series are the map's own numbers: container metrics from the container
nodes, edge counters from the graph's client -> server edges (so a count on
/metrics equals the count on the map), collector health from the collectors'
host records and report times. Label names are fixed here and listed in
docs/metrics.md; changing one breaks users' dashboards.

Cardinality is bounded: at most ``Limits.max_edges`` edges and
``Limits.max_containers`` containers are exported, the busiest edges and the
running containers first; ``portolan_metrics_dropped_edges`` and
``portolan_metrics_dropped_containers`` say how many were left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from collector.schema import HostRecord, SchemaError, host_of_node, parse_node_id

__all__ = [
    "CONTAINER_LABELS",
    "EDGE_LABELS",
    "Limits",
    "collector_families",
    "container_families",
    "edge_connections",
    "edge_families",
    "metric_families",
    "redis_family",
]

CONTAINER_LABELS = ("host", "container")
EDGE_LABELS = (
    "source", "source_host", "source_kind", "target", "target_host", "target_kind"
)
_RUNNING = ("running", "paused", "restarting")


@dataclass(frozen=True, slots=True)
class Limits:
    """How many edges and containers one scrape exports at most."""

    max_edges: int = 2000
    max_containers: int = 2000


# (family name, help, key in a container node's ``metrics``, factor); a
# name ending in ``_total`` is a counter, any other a gauge. Exported while the
# container runs (or is paused or restarting).
CONTAINER_SERIES = (
    ("portolan_container_cpu_cores",
     "CPU in use over the last collector interval, in cores.", "cpu_cores", 1),
    ("portolan_container_cpu_limit_cores",
     "The container's CPU limit, in cores (absent: no limit).",
     "cpu_limit_cores", 1),
    ("portolan_container_cpu_throttled_seconds_total",
     "Time the container's CPU was throttled.", "cpu_throttled_ns", 1e-9),
    ("portolan_container_memory_usage_bytes",
     "Memory charged to the container's cgroup.", "memory_usage_bytes", 1),
    ("portolan_container_memory_working_set_bytes",
     "Memory in use minus reclaimable file cache.",
     "memory_working_set_bytes", 1),
    ("portolan_container_memory_limit_bytes",
     "The container's memory limit (absent: no limit).", "memory_limit_bytes", 1),
    ("portolan_container_memory_oom_kills_total",
     "Processes of the container killed for want of memory.",
     "memory_oom_kills", 1),
    ("portolan_container_network_receive_bytes_total",
     "Bytes received on the container's network namespace's interfaces.",
     "net_rx_bytes", 1),
    ("portolan_container_network_transmit_bytes_total",
     "Bytes sent on the container's network namespace's interfaces.",
     "net_tx_bytes", 1),
)


def _family(name: str, help_text: str, labels: Iterable[str]) -> Metric:
    kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
    return kind(name, help_text, labels=list(labels))


def _number(value) -> float | None:
    """A metric value as a float; None for a missing or non-numeric one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def edge_connections(data: Mapping) -> float:
    """An edge's connections: the client's connects, or for a client no
    collector watches the server's accepts (the map's definition).

    >>> edge_connections({"connections": 3, "accepts": 0})
    3.0
    """
    return float(data.get("connections", 0) or 0) + float(data.get("accepts", 0) or 0)


def _endpoint(G: nx.DiGraph, node: str) -> tuple[str, str, str]:
    """(name, host id or "", kind) of a node: the labels of an edge's end."""
    try:
        kind, _ = parse_node_id(node)
        host = host_of_node(node) or ""
    except SchemaError:
        kind, host = "unknown", ""
    return str(G.nodes[node].get("name") or node), host, kind


def _container_nodes(G: nx.DiGraph) -> list[tuple[str, dict]]:
    """Container nodes, running ones first, then by host and name."""
    found = [(n, d) for n, d in G.nodes(data=True) if d.get("type") == "container"]
    found.sort(key=lambda nd: (nd[1].get("state") not in _RUNNING,
                               str(nd[1].get("host") or ""),
                               str(nd[1].get("name") or nd[0]), nd[0]))
    return found


def container_families(G: nx.DiGraph, limit: int) -> tuple[list[Metric], int]:
    """Per-container series from the container-level graph ``G``, and how many
    containers were left out by ``limit``.

    >>> G = nx.DiGraph()
    >>> G.add_node("container:h:c1", type="container", name="web", host="h",
    ...            state="running", metrics={"memory_usage_bytes": 100})
    >>> families, dropped = container_families(G, 10)
    >>> [(s.labels, s.value) for f in families for s in f.samples
    ...  if s.name == "portolan_container_memory_usage_bytes"]
    [({'host': 'h', 'container': 'web'}, 100.0)]
    """
    nodes = _container_nodes(G)
    kept, dropped = nodes[:max(limit, 0)], max(len(nodes) - max(limit, 0), 0)
    info = GaugeMetricFamily(
        "portolan_container_info",
        "Always 1: a container the collectors report, with its id, image and "
        "Docker state.",
        labels=[*CONTAINER_LABELS, "container_id", "image", "state"],
    )
    series = {name: _family(name, help_text, CONTAINER_LABELS)
              for name, help_text, _, _ in CONTAINER_SERIES}
    connections = CounterMetricFamily(
        "portolan_container_connections_total",
        "Connections the container made (direction out) or served (in), as the "
        "map counts them.", labels=[*CONTAINER_LABELS, "direction"],
    )
    failures = CounterMetricFamily(
        "portolan_container_connection_failures_total",
        "Failed connects the container made (direction out) or that were aimed "
        "at it (in).", labels=[*CONTAINER_LABELS, "direction"],
    )
    # Two records with the same host and name (a name reused while the old
    # record lingers) would be one series twice: their values are summed.
    values: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
    infos: dict[tuple, float] = {}
    for node, data in kept:
        labels = (str(data.get("host") or ""), str(data.get("name") or node))
        infos[(*labels, str(data.get("container_id") or ""),
               str(data.get("image") or ""), str(data.get("state") or ""))] = 1.0
        # A stopped container's last reading is history, not its use now.
        metrics = (data.get("metrics") or {}) if data.get("state") in _RUNNING else {}
        for name, _, key, factor in CONTAINER_SERIES:
            value = _number(metrics.get(key))
            if value is not None:
                values[name][labels] += value * factor
        for direction, edges in (("out", G.out_edges(node, data=True)),
                                 ("in", G.in_edges(node, data=True))):
            conns = fails = 0.0
            for _, _, edge in edges:
                conns += edge_connections(edge)
                fails += float(edge.get("failed", 0) or 0)
            values["connections"][(*labels, direction)] += conns
            values["failures"][(*labels, direction)] += fails
    for labels, value in infos.items():
        info.add_metric(list(labels), value)
    for name, family in series.items():
        for labels, value in values[name].items():
            family.add_metric(list(labels), value)
    for labels, value in values["connections"].items():
        connections.add_metric(list(labels), value)
    for labels, value in values["failures"].items():
        failures.add_metric(list(labels), value)
    return [info, *series.values(), connections, failures], dropped


def _edge_rank(item: tuple[tuple, dict]) -> tuple:
    """Busiest first (connections and failures, then bytes), then by labels."""
    labels, data = item
    return (-(edge_connections(data) + float(data.get("failed", 0) or 0)),
            -(float(data.get("bytes_sent", 0) or 0)
              + float(data.get("bytes_received", 0) or 0)),
            labels)


_EDGE_SUMS = ("connections", "accepts", "failed", "bytes_sent", "bytes_received",
              "connect_latency_us_sum", "connect_latency_count")


def edge_families(G: nx.DiGraph, limit: int) -> tuple[list[Metric], int]:
    """Per-edge counters of the container-level graph ``G``, and how many edges
    were left out by ``limit``.

    >>> G = nx.DiGraph()
    >>> G.add_node("container:h:a", name="client")
    >>> G.add_node("container:h:b", name="server")
    >>> G.add_edge("container:h:a", "container:h:b", connections=50, failed=1)
    >>> families, dropped = edge_families(G, 10)
    >>> [(s.labels["source"], s.labels["target"], s.value)
    ...  for s in families[0].samples]
    [('client', 'server', 50.0)]
    """
    edges: dict[tuple, dict[str, float]] = {}
    for u, v, data in G.edges(data=True):
        labels = (*_endpoint(G, u), *_endpoint(G, v))
        sums = edges.setdefault(labels, dict.fromkeys(_EDGE_SUMS, 0.0))
        for name in _EDGE_SUMS:
            sums[name] += float(data.get(name, 0) or 0)
    ranked = sorted(edges.items(), key=_edge_rank)
    kept, dropped = ranked[:max(limit, 0)], max(len(ranked) - max(limit, 0), 0)
    connections = CounterMetricFamily(
        "portolan_edge_connections_total",
        "Connections from source to target (the client's connects, or the "
        "server's accepts when no collector watches the client).",
        labels=EDGE_LABELS,
    )
    failures = CounterMetricFamily(
        "portolan_edge_connection_failures_total",
        "Failed connects from source to target (refused, timed out, "
        "unreachable or other).", labels=EDGE_LABELS,
    )
    sent = CounterMetricFamily(
        "portolan_edge_sent_bytes_total",
        "Bytes the source (client) sent to the target (server).", labels=EDGE_LABELS,
    )
    received = CounterMetricFamily(
        "portolan_edge_received_bytes_total",
        "Bytes the source (client) received from the target (server).",
        labels=EDGE_LABELS,
    )
    latency = SummaryMetricFamily(
        "portolan_edge_connect_latency_seconds",
        "Time from connect to established, over the connects that were timed.",
        labels=EDGE_LABELS,
    )
    for labels, sums in kept:
        values = list(labels)
        connections.add_metric(values, sums["connections"] + sums["accepts"])
        failures.add_metric(values, sums["failed"])
        sent.add_metric(values, sums["bytes_sent"])
        received.add_metric(values, sums["bytes_received"])
        latency.add_metric(values, count_value=sums["connect_latency_count"],
                           sum_value=sums["connect_latency_us_sum"] * 1e-6)
    return [connections, failures, sent, received, latency], dropped


def collector_families(
    reported: Mapping[str, float], hosts: Mapping[str, HostRecord], now: float,
    live_ttl: float,
) -> list[Metric]:
    """The collectors' own health: up, last report age, mode, lost counts.

    ``reported`` maps host id -> unix time of its collector's last report;
    ``hosts`` holds the host records still live in Redis.

    >>> [f] = [f for f in collector_families({"h": 95.0}, {}, 100.0, 10.0)
    ...        if f.name == "portolan_collector_last_report_age_seconds"]
    >>> f.samples[0].value
    5.0
    """
    up = GaugeMetricFamily(
        "portolan_collector_up",
        "1 if the host's collector reported within PORTOLAN_COLLECTOR_TTL, else 0.",
        labels=["host"],
    )
    age = GaugeMetricFamily(
        "portolan_collector_last_report_age_seconds",
        "Seconds since the host's collector last reported.", labels=["host"],
    )
    info = GaugeMetricFamily(
        "portolan_collector_info",
        "Always 1: the host's collector, its mode (ebpf or procfs) and kernel.",
        labels=["host", "mode", "kernel"],
    )
    lost = CounterMetricFamily(
        "portolan_collector_lost_counts_total",
        "Flow counts the collector's tracer dropped (full maps, skipped "
        "programs) since it started.", labels=["host"],
    )
    for host_id, seen in sorted(reported.items()):
        seconds = max(now - seen, 0.0)
        up.add_metric([host_id], 1.0 if seconds <= live_ttl else 0.0)
        age.add_metric([host_id], round(seconds, 3))
    for host_id, record in sorted(hosts.items()):
        info.add_metric([host_id, record.mode or "unknown", record.kernel or ""], 1.0)
        value = _number((record.metrics or {}).get("tracer_lost_total"))
        if value is not None:
            lost.add_metric([host_id], value)
    return [up, age, info, lost]


def redis_family(up: bool) -> Metric:
    """Whether the web app could read Redis for this scrape."""
    return GaugeMetricFamily(
        "portolan_redis_up", "1 if Redis answered this scrape, else 0.",
        value=1.0 if up else 0.0,
    )


def metric_families(
    G: nx.DiGraph, reported: Mapping[str, float], hosts: Mapping[str, HostRecord],
    now: float, live_ttl: float, limits: Limits = Limits(),  # noqa: B008 - frozen
) -> list[Metric]:
    """Every family one scrape exports, from the container-level graph ``G``."""
    containers, dropped_containers = container_families(G, limits.max_containers)
    edges, dropped_edges = edge_families(G, limits.max_edges)
    return [
        redis_family(True),
        *collector_families(reported, hosts, now, live_ttl),
        *containers,
        *edges,
        GaugeMetricFamily(
            "portolan_metrics_dropped_containers",
            "Containers left out of this scrape by PORTOLAN_METRICS_MAX_CONTAINERS.",
            value=float(dropped_containers),
        ),
        GaugeMetricFamily(
            "portolan_metrics_dropped_edges",
            "Edges left out of this scrape by PORTOLAN_METRICS_MAX_EDGES (the "
            "least busy).", value=float(dropped_edges),
        ),
    ]
