"""The zoom levels are pure functions: built from records, totals preserved."""

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.schema import (
    COUNTERS,
    ContainerRecord,
    FlowKey,
    HostRecord,
    container_node_id,
    external_node_id,
    host_node_id,
    loopback_address,
    make_address_target,
    process_node_id,
    published_address,
    service_node_id,
)
from webapp.topology.graph import build_graph, coarsen, edge_status, worst_status
from webapp.topology.store import TopologyState


def make_state(hosts=2, containers=3):
    state = TopologyState()
    for h in range(hosts):
        hid = f"host{h}"
        state.hosts[hid] = HostRecord(id=hid, hostname=hid)
        state.containers[hid] = {}
        for c in range(containers):
            cid = f"c{h}{c}"
            ip = f"10.0.{h}.{c + 2}"
            state.containers[hid][cid] = ContainerRecord(
                id=cid, name=f"ctr-{h}-{c}", state="running", ips=[ip]
            )
            state.addrs.setdefault(hid, {})[ip] = container_node_id(hid, cid)
    return state


def add_flow(state, host, src_cid, ip, port, **counters):
    key = FlowKey(container_node_id(host, src_cid), "out", ip, port)
    state.flows[(host, key)] = counters


def test_container_level_edge_goes_client_to_server_across_hosts():
    state = make_state()
    add_flow(state, "host0", "c00", "10.0.1.2", 80, connections=7, bytes_sent=70)
    G = build_graph(state, "container")
    src, dst = container_node_id("host0", "c00"), container_node_id("host1", "c10")
    assert G.edges[src, dst]["connections"] == 7
    assert G.edges[src, dst]["bytes_sent"] == 70
    assert G.nodes[dst]["name"] == "ctr-1-0" and G.nodes[dst]["type"] == "container"
    assert G.nodes[dst]["parent"] == host_node_id("host1")


def test_an_overlay_ip_held_now_by_a_running_container_resolves_to_it():
    """host0 still claims its stopped task's overlay IP; host1's running task
    holds it now: clients, on any host, reach the running one. A stopped
    container that alone claims an address still gets its clients' edges."""
    state = make_state(hosts=3, containers=1)
    ip = "10.9.0.5"
    state.containers["host0"]["old"] = ContainerRecord(
        id="old", name="task-old", state="exited", ips=[ip])
    state.addrs["host0"][ip] = container_node_id("host0", "old")
    state.containers["host1"]["new"] = ContainerRecord(
        id="new", name="task-new", state="running", ips=[ip])
    state.addrs["host1"][ip] = container_node_id("host1", "new")
    add_flow(state, "host0", "c00", ip, 80, connections=1)
    add_flow(state, "host2", "c20", ip, 80, connections=1)
    G = build_graph(state, "container")
    new = container_node_id("host1", "new")
    assert G.has_edge(container_node_id("host0", "c00"), new)
    assert G.has_edge(container_node_id("host2", "c20"), new)
    # Alone in claiming it, a stopped server keeps its failed clients' edge.
    state.addrs["host1"].pop(ip)
    state.containers["host1"].pop("new")
    G = build_graph(state, "container")
    assert G.has_edge(container_node_id("host2", "c20"),
                      container_node_id("host0", "old"))


def test_service_level_targets_the_port_and_host_level_sums():
    state = make_state()
    add_flow(state, "host0", "c00", "10.0.1.2", 80, connections=3)
    add_flow(state, "host0", "c01", "10.0.1.2", 80, connections=4)
    add_flow(state, "host0", "c01", "10.0.1.2", 5432, connections=5, failed=1,
             failed_refused=1)
    S = build_graph(state, "service")
    server = container_node_id("host1", "c10")
    assert S.nodes[service_node_id(server, 80, "tcp")]["port"] == 80
    assert S.edges[container_node_id("host0", "c01"),
                   service_node_id(server, 5432, "tcp")]["failed_refused"] == 1
    H = build_graph(state, "host")
    e = H.edges[host_node_id("host0"), host_node_id("host1")]
    assert e["connections"] == 12 and e["failed"] == 1
    assert set(H.nodes) == {host_node_id("host0"), host_node_id("host1")}


def test_loopback_stays_inside_the_container_and_unknown_ips_are_external():
    state = make_state(hosts=1)
    add_flow(state, "host0", "c00", "127.0.0.1", 8080, connections=2)
    add_flow(state, "host0", "c00", "192.0.2.9", 443, connections=1)
    G = build_graph(state, "container")
    me = container_node_id("host0", "c00")
    assert G.edges[me, me]["connections"] == 2
    assert G.edges[me, external_node_id("192.0.2.0/24")]["connections"] == 1
    assert G.nodes[external_node_id("192.0.2.0/24")]["addresses"] == ["192.0.2.9"]


def test_server_side_record_only_used_for_unmonitored_clients():
    state = make_state(hosts=1)
    server = container_node_id("host0", "c00")
    state.flows[("host0", FlowKey(server, "in", "10.0.0.3", 80))] = {"accepts": 5}
    state.flows[("host0", FlowKey(server, "in", "198.51.100.7", 80))] = {"accepts": 2}
    G = build_graph(state, "container")
    assert not G.has_edge(container_node_id("host0", "c01"), server)
    assert G.edges[external_node_id("198.51.100.0/24"), server]["accepts"] == 2


def test_red_container_turns_its_host_red_when_zoomed_out():
    state = make_state(hosts=1)
    state.containers["host0"]["c01"].state = "exited"
    state.containers["host0"]["c01"].exit_code = 1
    assert build_graph(state, "host").nodes[host_node_id("host0")]["status"] == \
        "critical"
    assert build_graph(state, "container").nodes[host_node_id("host0")]["status"] == \
        "critical"


def test_host_process_rolls_into_its_host():
    state = make_state(hosts=2)
    key = FlowKey(process_node_id("host0", "curl"), "out", "10.0.1.2", 80)
    state.flows[("host0", key)] = {"connections": 1}
    H = build_graph(state, "host")
    assert H.edges[host_node_id("host0"), host_node_id("host1")]["connections"] == 1


def test_status_helpers():
    assert edge_status({"connections_per_s": 0, "failed_per_s": 3}) == "critical"
    assert edge_status({"connections_per_s": 1}) == "ok"
    # A failure long ago (in the totals only) no longer colours the edge.
    assert edge_status({"connections": 5, "failed": 3, "failed_per_s": 0}) == "ok"
    assert worst_status([]) == "unknown"
    with pytest.raises(ValueError):
        build_graph(TopologyState(), "galaxy")


flows_strategy = st.lists(
    st.tuples(
        st.integers(0, 2), st.integers(0, 3), st.integers(0, 2), st.integers(0, 3),
        st.sampled_from([80, 443, 5432]),
        st.dictionaries(st.sampled_from(COUNTERS), st.integers(0, 10**6)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(flows_strategy)
def test_totals_are_preserved_from_level_to_level(flows):
    state = make_state(hosts=3, containers=4)
    for sh, sc, dh, dc, port, counters in flows:
        key = FlowKey(container_node_id(f"host{sh}", f"c{sh}{sc}"), "out",
                      f"10.0.{dh}.{dc + 2}", port)
        merged = state.flows.setdefault((f"host{sh}", key), {})
        for name, value in counters.items():
            merged[name] = merged.get(name, 0) + value
    expected = {
        name: sum(c.get(name, 0) for c in state.flows.values()) for name in COUNTERS
    }
    for level in ("service", "container", "host"):
        G = build_graph(state, level)
        totals = {
            name: sum(d[name] for _, _, d in G.edges(data=True)) for name in COUNTERS
        }
        assert totals == expected, level


def test_coarsen_is_pure():
    state = make_state()
    add_flow(state, "host0", "c00", "10.0.1.2", 80, connections=3)
    S = build_graph(state, "service")
    before = nx.node_link_data(S, edges="links")
    coarsen(S, "host")
    assert nx.node_link_data(S, edges="links") == before


def test_bridge_ips_resolve_on_their_own_host_first():
    # Both hosts have a container at 10.0.0.2 (separate bridge networks).
    state = make_state(hosts=2)
    state.addrs["host1"]["10.0.0.2"] = container_node_id("host1", "c12")
    add_flow(state, "host1", "c10", "10.0.0.2", 80, connections=1)
    add_flow(state, "host0", "c01", "10.0.0.2", 80, connections=2)
    G = build_graph(state, "container")
    assert G.edges[container_node_id("host1", "c10"),
                   container_node_id("host1", "c12")]["connections"] == 1
    assert G.edges[container_node_id("host0", "c01"),
                   container_node_id("host0", "c00")]["connections"] == 2


def test_published_port_on_another_host_reaches_the_container_port():
    state = make_state(hosts=2)
    server = container_node_id("host1", "c10")
    state.addrs["host1"]["192.0.2.20"] = host_node_id("host1")
    state.addrs["host1"][published_address("192.0.2.20", 8080)] = \
        make_address_target(server, 80)
    add_flow(state, "host0", "c00", "192.0.2.20", 8080, connections=4)
    # The server saw the client NATed to host0's address: not counted twice.
    state.addrs["host0"]["192.0.2.10"] = host_node_id("host0")
    state.flows[("host1", FlowKey(server, "in", "192.0.2.10", 80))] = {"accepts": 4}
    S = build_graph(state, "service")
    client = container_node_id("host0", "c00")
    assert S.edges[client, service_node_id(server, 80, "tcp")]["connections"] == 4
    assert S.in_degree(service_node_id(server, 80, "tcp")) == 1


def test_host_process_loopback_to_published_port():
    state = make_state(hosts=1)
    server = container_node_id("host0", "c00")
    state.addrs["host0"][loopback_address("host0", 8080)] = \
        make_address_target(server, 80)
    key = FlowKey(process_node_id("host0", "curl"), "out", "127.0.0.1", 8080)
    state.flows[("host0", key)] = {"connections": 3}
    S = build_graph(state, "service")
    assert S.edges[process_node_id("host0", "curl"),
                   service_node_id(server, 80, "tcp")]["connections"] == 3


def test_rates_ride_on_edges_and_sum_when_zooming_out():
    state = make_state(hosts=2)
    add_flow(state, "host0", "c00", "10.0.1.2", 80, connections=10)
    add_flow(state, "host0", "c01", "10.0.1.2", 80, connections=10)
    for (host, key) in list(state.flows):
        state.rates[(host, key)] = {"connections": 2.5}
    H = build_graph(state, "host")
    assert H.edges[host_node_id("host0"), host_node_id("host1")][
        "connections_per_s"] == 5.0


@settings(max_examples=50, deadline=None)
@given(flows_strategy)
def test_direct_container_level_equals_coarsened_service_level(flows):
    state = make_state(hosts=3, containers=4)
    for sh, sc, dh, dc, port, counters in flows:
        key = FlowKey(container_node_id(f"host{sh}", f"c{sh}{sc}"), "out",
                      f"10.0.{dh}.{dc + 2}", port)
        state.flows[(f"host{sh}", key)] = counters
    direct = build_graph(state, "container")
    via_services = coarsen(build_graph(state, "service"), "container")
    assert nx.utils.graphs_equal(direct, via_services)


def test_a_node_id_naming_an_invalid_host_is_skipped(caplog):
    # parse_node_id accepts any host part; host_node_id refused it and the
    # whole build failed ("graph update failed", /api/graph/ 500).
    state = make_state(hosts=2)
    add_flow(state, "host0", "c00", "10.0.1.2", 80, connections=7)
    state.addrs["host0"]["10.9.9.9"] = "container:bad%20host:x"  # index value
    add_flow(state, "host0", "c01", "10.9.9.9", 80, connections=1)
    bad_client = FlowKey("process:bad%20host:sh", "out", "10.0.1.2", 80)  # flow
    state.flows[("host0", bad_client)] = {"connections": 2}
    for level in ("service", "container", "host"):
        G = build_graph(state, level)
        assert G.number_of_nodes(), f"{level}: an empty graph proves nothing"
        assert not [n for n in G if "bad" in n], level
    G = build_graph(state, "container")
    assert G.edges[container_node_id("host0", "c00"),
                   container_node_id("host1", "c10")]["connections"] == 7
    skipped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("10.9.9.9" in m and "'bad host'" in m for m in skipped)
    assert any("process:bad%20host:sh" in m for m in skipped)


def test_external_addresses_are_counted_once_each():
    # Beyond the 20 listed, every flow from an address counted it again.
    state = make_state(hosts=1)
    server = container_node_id("host0", "c00")
    for i in range(1, 26):
        add_flow(state, "host0", "c01", f"192.0.2.{i}", 80, connections=1)
        add_flow(state, "host0", "c01", f"192.0.2.{i}", 443, connections=1)
        state.flows[("host0", FlowKey(server, "in", f"192.0.2.{i}", 80))] = {
            "accepts": 1}
    for level in ("service", "container", "host"):
        external = build_graph(state, level).nodes[external_node_id("192.0.2.0/24")]
        assert external["address_count"] == 25, level
        assert len(external["addresses"]) == 20, level


def test_edges_count_bytes_from_the_client_whichever_side_recorded_them():
    # Bytes and datagrams are counted from the local socket's side: a server's
    # own record ("in") had sent and received the wrong way round on its edge.
    state = make_state(hosts=1)
    server = container_node_id("host0", "c00")
    add_flow(state, "host0", "c01", "10.0.0.2", 80, connections=1,
             bytes_sent=100, bytes_received=5000)  # the client's record
    tcp = FlowKey(server, "in", "198.51.100.7", 80)  # an unmonitored client
    state.flows[("host0", tcp)] = {"accepts": 1, "bytes_sent": 5000,
                                   "bytes_received": 100}
    state.rates[("host0", tcp)] = {"bytes_sent": 50.0, "bytes_received": 1.0}
    udp = FlowKey(server, "in", "198.51.100.7", 53, "udp")
    state.flows[("host0", udp)] = {"datagrams_sent": 3, "datagrams_received": 7}
    state.rates[("host0", udp)] = {"datagrams_sent": 0.3, "datagrams_received": 0.7}
    G = build_graph(state, "service")
    external = external_node_id("198.51.100.0/24")
    inside = G.edges[container_node_id("host0", "c01"), service_node_id(server, 80)]
    outside = G.edges[external, service_node_id(server, 80)]
    for edge in (inside, outside):
        assert (edge["bytes_sent"], edge["bytes_received"]) == (100, 5000)
    assert outside["bytes_sent_per_s"] == 1.0
    assert outside["bytes_received_per_s"] == 50.0
    dns = G.edges[external, service_node_id(server, 53, "udp")]
    assert (dns["datagrams_sent"], dns["datagrams_received"]) == (7, 3)
    assert dns["datagrams_sent_per_s"] == 0.7
    assert dns["datagrams_received_per_s"] == 0.3
    assert outside["accepts"] == 1
