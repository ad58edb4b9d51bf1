"""/metrics' families are pure functions of the container-level graph: the
counts on /metrics are the map's counts, label names are fixed, series are
capped, and the exposition follows Prometheus' naming conventions."""

import re

import networkx as nx
import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    container_node_id,
)
from webapp.metrics.config import metrics_settings
from webapp.metrics.families import (
    EDGE_LABELS,
    Limits,
    collector_families,
    container_families,
    edge_connections,
    edge_families,
    metric_families,
)
from webapp.metrics.views import bearer_token
from webapp.topology.graph import build_graph
from webapp.topology.store import TopologyState


def make_state():
    """Two hosts; host0 runs client and a stopped job, host1 runs server."""
    state = TopologyState()
    for hid, records in {
        "host0": [("c1", "client", "running", "10.0.0.2"),
                  ("c2", "job", "exited", "10.0.0.3")],
        "host1": [("s1", "server", "running", "10.0.1.2")],
    }.items():
        state.hosts[hid] = HostRecord(id=hid, hostname=hid, mode="ebpf",
                                      kernel="6.1.0",
                                      metrics={"tracer_lost_total": 3})
        state.containers[hid] = {}
        for cid, name, docker_state, ip in records:
            state.containers[hid][cid] = ContainerRecord(
                id=cid, name=name, state=docker_state, ips=[ip], image="img:1",
                metrics={"cpu_cores": 0.25, "cpu_throttled_ns": 2_500_000_000,
                         "memory_usage_bytes": 1000, "memory_limit_bytes": None,
                         "net_rx_bytes": 10, "net_tx_bytes": 20})
            state.addrs.setdefault(hid, {})[ip] = container_node_id(hid, cid)
    return state


def add_flow(state, host, cid, ip, port, direction="out", **counters):
    key = FlowKey(container_node_id(host, cid), direction, ip, port)
    state.flows[(host, key)] = counters


def samples(families, name):
    """{labels as a sorted tuple of pairs: value} of one sample name."""
    return {tuple(sorted(s.labels.items())): s.value
            for f in families for s in f.samples if s.name == name}


def one(families, name, **labels):
    found = [s.value for f in families for s in f.samples
             if s.name == name and all(s.labels.get(k) == v
                                       for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_edge_counters_are_the_graph_edge_counts_with_fixed_labels():
    state = make_state()
    add_flow(state, "host0", "c1", "10.0.1.2", 8080, connections=50, failed=2,
             bytes_sent=500, bytes_received=7000, connect_latency_us_sum=3000,
             connect_latency_count=50)
    families, dropped = edge_families(build_graph(state, "container"), 100)
    assert dropped == 0
    edge = dict(source="client", source_host="host0", source_kind="container",
                target="server", target_host="host1", target_kind="container")
    assert one(families, "portolan_edge_connections_total", **edge) == 50
    assert one(families, "portolan_edge_connection_failures_total", **edge) == 2
    assert one(families, "portolan_edge_sent_bytes_total", **edge) == 500
    assert one(families, "portolan_edge_received_bytes_total", **edge) == 7000
    assert one(families, "portolan_edge_connect_latency_seconds_count", **edge) == 50
    assert one(families, "portolan_edge_connect_latency_seconds_sum",
               **edge) == pytest.approx(0.003)
    for family in families:
        for sample in family.samples:
            assert tuple(sample.labels) == EDGE_LABELS


def test_an_unwatched_client_counts_by_the_servers_accepts():
    state = make_state()
    add_flow(state, "host1", "s1", "203.0.113.9", 8080, direction="in", accepts=4)
    families, _ = edge_families(build_graph(state, "container"), 100)
    assert one(families, "portolan_edge_connections_total",
               source="203.0.113.0/24", source_host="", source_kind="external",
               target="server", target_kind="container") == 4


def test_edges_whose_labels_coincide_are_summed_into_one_series():
    G = nx.DiGraph()
    G.add_node("container:h:a1", name="a")
    G.add_node("container:h:a2", name="a")  # the same name, another id
    G.add_node("container:h:b", name="b")
    G.add_edge("container:h:a1", "container:h:b", connections=2)
    G.add_edge("container:h:a2", "container:h:b", connections=3)
    families, _ = edge_families(G, 10)
    assert list(samples(families, "portolan_edge_connections_total").values()) == [5]


def test_edges_beyond_the_cap_are_the_least_busy_and_are_counted():
    G = nx.DiGraph()
    for i, count in enumerate([5, 50, 1, 20]):
        G.add_node(f"container:h:c{i}", name=f"c{i}")
        G.add_node(f"container:h:s{i}", name=f"s{i}")
        G.add_edge(f"container:h:c{i}", f"container:h:s{i}", connections=count)
    families, dropped = edge_families(G, 2)
    kept = samples(families, "portolan_edge_connections_total")
    assert sorted(kept.values()) == [20, 50]
    assert dropped == 2
    everything = metric_families(G, {}, {}, 0.0, 10.0, Limits(max_edges=2))
    assert one(everything, "portolan_metrics_dropped_edges") == 2
    assert one(everything, "portolan_metrics_dropped_containers") == 0


def test_container_series_come_from_the_records_in_base_units():
    state = make_state()
    add_flow(state, "host0", "c1", "10.0.1.2", 8080, connections=7, failed=1)
    families, dropped = container_families(build_graph(state, "container"), 100)
    assert dropped == 0
    server = dict(host="host1", container="server")
    client = dict(host="host0", container="client")
    assert one(families, "portolan_container_cpu_cores", **server) == 0.25
    assert one(families, "portolan_container_cpu_throttled_seconds_total",
               **server) == 2.5
    assert one(families, "portolan_container_memory_usage_bytes", **server) == 1000
    assert one(families, "portolan_container_network_receive_bytes_total",
               **server) == 10
    assert one(families, "portolan_container_network_transmit_bytes_total",
               **server) == 20
    # No limit: no series rather than a made-up number.
    assert samples(families, "portolan_container_memory_limit_bytes") == {}
    assert one(families, "portolan_container_connections_total",
               direction="out", **client) == 7
    assert one(families, "portolan_container_connections_total",
               direction="in", **server) == 7
    assert one(families, "portolan_container_connection_failures_total",
               direction="in", **server) == 1
    # A stopped container's last reading is not its use now: no series.
    assert not [s for s in samples(families, "portolan_container_cpu_cores")
                if ("container", "job") in s]
    assert one(families, "portolan_container_info", container_id="c2",
               state="exited", image="img:1", host="host0", container="job") == 1


def test_the_container_cap_keeps_running_containers_first():
    families, dropped = container_families(build_graph(make_state(), "container"), 2)
    assert dropped == 1
    kept = {s.labels["container"] for s in families[0].samples}
    assert kept == {"client", "server"}


def test_collector_health_says_up_age_mode_and_lost_counts():
    hosts = {"a": HostRecord(id="a", mode="procfs", kernel="5.4",
                             metrics={"tracer_lost_total": 9}),
             "b": HostRecord(id="b", mode="ebpf")}
    families = collector_families({"a": 98.0, "b": 60.0}, hosts, 100.0, 10.0)
    assert one(families, "portolan_collector_up", host="a") == 1
    assert one(families, "portolan_collector_up", host="b") == 0
    assert one(families, "portolan_collector_last_report_age_seconds", host="b") == 40
    assert one(families, "portolan_collector_info", host="a", mode="procfs",
               kernel="5.4") == 1
    assert one(families, "portolan_collector_lost_counts_total", host="a") == 9
    # A collector of an older version says nothing of its losses: no series.
    assert samples(families, "portolan_collector_lost_counts_total").keys() == {
        (("host", "a"),)}


NAME = re.compile(r"^portolan_[a-z][a-z0-9_]*$")


def test_the_exposition_parses_and_follows_the_naming_conventions():
    state = make_state()
    add_flow(state, "host0", "c1", "10.0.1.2", 8080, connections=3)
    G = build_graph(state, "container")

    class Fixed:
        def collect(self):
            return metric_families(G, {"host0": 99.0}, state.hosts, 100.0, 10.0)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    parsed = list(text_string_to_metric_families(text))
    assert parsed, text
    for family in parsed:
        assert NAME.match(family.name), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            elif family.type == "gauge":
                assert not sample.name.endswith("_total"), sample.name
    value = {s.name: s.value for f in parsed for s in f.samples
             if s.name == "portolan_edge_connections_total"}
    assert value == {"portolan_edge_connections_total": 3}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5),
                          st.integers(0, 1000), st.integers(0, 1000)), max_size=30))
def test_without_a_cap_the_exported_totals_are_the_graphs(edges):
    G = nx.DiGraph()
    for i in range(6):
        G.add_node(f"container:h:n{i}", name=f"n{i}")
    for u, v, conns, accepts in edges:
        a, b = f"container:h:n{u}", f"container:h:n{v}"
        if G.has_edge(a, b):
            G.edges[a, b]["connections"] += conns
            G.edges[a, b]["accepts"] += accepts
        else:
            G.add_edge(a, b, connections=conns, accepts=accepts)
    families, dropped = edge_families(G, len(edges))
    exported = sum(samples(families, "portolan_edge_connections_total").values())
    assert dropped == 0
    assert exported == sum(edge_connections(d) for _, _, d in G.edges(data=True))


def test_settings_errors_name_the_variable():
    with pytest.raises(ImproperlyConfigured, match="PORTOLAN_METRICS_MAX_EDGES"):
        metrics_settings({"PORTOLAN_METRICS_MAX_EDGES": "many"})
    with pytest.raises(ImproperlyConfigured, match="PORTOLAN_METRICS_MAX_CONTAINERS"):
        metrics_settings({"PORTOLAN_METRICS_MAX_CONTAINERS": "-1"})
    with pytest.raises(ImproperlyConfigured, match="PORTOLAN_METRICS_TOKEN"):
        metrics_settings({"PORTOLAN_METRICS_TOKEN": "short"})
    with pytest.raises(ImproperlyConfigured, match="PORTOLAN_METRICS_TOKEN"):
        metrics_settings({"PORTOLAN_METRICS_TOKEN": "a token with spaces in it"})
    assert metrics_settings({"PORTOLAN_METRICS_TOKEN": "x" * 16})["TOKEN"] == "x" * 16


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None),
    ("Bearer", None), ("", None), ("abc", None),
])
def test_bearer_token_parsing(header, token):
    assert bearer_token(header) == token
