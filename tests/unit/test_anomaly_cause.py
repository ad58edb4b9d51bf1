"""Likely-cause ranking along the dependency graph."""

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.anomalies.cause import rank_causes
from webapp.anomalies.keys import edge_target
from webapp.anomalies.merge import apply_analysis


def cid(name):
    return f"container:h:{name}"


def chain(*names, status="ok"):
    G = nx.DiGraph()
    G.add_node("host:h", type="host", name="h", parent=None, status="ok")
    for n in names:
        G.add_node(cid(n), type="container", name=n, parent="host:h", status=status)
    for a, b in zip(names, names[1:], strict=False):
        G.add_edge(cid(a), cid(b), status="ok")
    return G


def red(status="critical", reason="trouble", rule="service_failures"):
    return {"status": status, "own_status": status, "reasons": [reason],
            "anomalies": [{"rule": rule, "severity": status, "reason": reason}]}


def test_stopped_server_ranks_above_its_failing_clients():
    G = chain("front", "api", "db")
    G.add_edge(cid("worker"), cid("db"))
    G.add_node(cid("worker"), type="container", name="worker", parent="host:h")
    G.nodes[cid("db")]["status"] = "stopped"
    statuses = {
        cid("db"): red(reason="exited while 2 client(s) still connect",
                       rule="service_down"),
        edge_target(cid("api"), cid("db")): red(reason="connection refused"),
        edge_target(cid("worker"), cid("db")): red(reason="connection refused"),
        # api answers its own callers with errors: red too, but downstream of db.
        cid("api"): red("warning", "connection refused from 1 of 1 client(s)"),
        edge_target(cid("front"), cid("api")): red("warning", "connection refused"),
    }
    causes = rank_causes(G, statuses)
    assert [c["name"] for c in causes] == ["db", "api"]
    top = causes[0]
    assert top["rank"] == 1 and top["dependencies_healthy"]
    assert set(top["explains"]) == {cid("api"), cid("worker"), cid("front")}
    assert "its own dependencies are healthy" in top["why"]
    assert not causes[1]["dependencies_healthy"]


def test_isolated_trouble_ranks_below_trouble_that_explains_others():
    G = chain("front", "api", "db")
    G.add_node(cid("batch"), type="container", name="batch", parent="host:h")
    statuses = {
        cid("batch"): red("critical", "OOM killed", "oom"),
        cid("db"): red("warning", "memory near its limit", "memory"),
        edge_target(cid("api"), cid("db")): red("warning", "slow connects"),
    }
    assert [c["name"] for c in rank_causes(G, statuses)] == ["db", "batch"]


def test_host_pressure_explains_its_containers():
    G = chain("a", "b")
    statuses = {
        "host:h": red("critical", "host memory low", "host_memory"),
        cid("a"): red("critical", "OOM killed", "oom"),
    }
    causes = rank_causes(G, statuses)
    assert causes[0]["target"] == "host:h"
    assert causes[0]["explains"] == [cid("a")]


def test_a_host_red_only_from_its_containers_is_no_failing_dependency():
    """build_graph rolls a critical container up onto its host; a container
    that calls its host (e.g. the docker0 gateway) must not then see itself
    as its own failing dependency."""
    G = chain("api", "db", "cache")
    G.remove_edge(cid("db"), cid("cache"))
    G.add_edge(cid("db"), "host:h")
    G.nodes[cid("db")]["status"] = "critical"
    G.nodes["host:h"]["status"] = "critical"  # rolled up from db
    statuses = {
        cid("db"): red("critical", "exited with code 1", "exited"),
        edge_target(cid("api"), cid("db")): red(reason="connection refused"),
        cid("cache"): red("warning", "memory near its limit", "memory"),
    }
    causes = rank_causes(G, statuses)
    assert [c["name"] for c in causes] == ["db", "cache"]
    assert causes[0]["dependencies_healthy"]
    assert causes[0]["explains"] == [cid("api")]


def test_a_host_that_serves_a_refused_port_does_not_take_its_old_exited_containers():
    """As CI found on an engine with stale exited containers: clients on the
    host's network call a published port; its server is killed; the refused
    calls to 127.0.0.1 land on the host node. The killed server is the cause,
    not the host with its long-exited containers counted as explained."""
    G = chain("server", "client1", "client2")
    for c in ("client1", "client2"):
        G.remove_edges_from(list(G.in_edges(cid(c))))
        G.add_edge(cid(c), cid("server"))
    G.add_node("process:h:python", type="process", name="python", parent="host:h")
    G.add_edge("process:h:python", "host:h")
    G.nodes[cid("server")]["status"] = "stopped"
    statuses = {
        cid("server"): red(reason="exited while 2 client(s) still connect",
                           rule="service_down"),
        edge_target(cid("client1"), cid("server")): red(reason="connection refused"),
        edge_target(cid("client2"), cid("server")): red(reason="connection refused"),
        edge_target("process:h:python", "host:h"): red(reason="connection refused"),
    }
    for i in range(6):  # exited hours ago; nothing calls them
        name = f"old{i}"
        G.add_node(cid(name), type="container", name=name, parent="host:h",
                   status="critical")
        statuses[cid(name)] = red(reason="exited with code 1", rule="exited")
    causes = rank_causes(G, statuses, limit=10)
    assert causes[0]["name"] == "server", [(c["name"], c["explains"]) for c in causes]
    host = next(c for c in causes if c["target"] == "host:h")
    assert host["explains"] == ["process:h:python"]


def test_no_trouble_no_causes_and_the_limit_holds():
    G = chain("a", "b", "c")
    assert rank_causes(G, {}) == []
    statuses = {cid(n): red() for n in "abc"}
    assert len(rank_causes(G, statuses, limit=2)) == 2


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=20),
    st.lists(st.integers(0, n - 1), max_size=n))))
def test_a_candidate_with_healthy_dependencies_always_ranks_first(case):
    n, edges, reds = case
    G = nx.DiGraph()
    for i in range(n):
        G.add_node(cid(i), type="container", name=str(i), parent=None)
    G.add_edges_from((cid(a), cid(b)) for a, b in edges if a != b)
    statuses = {cid(i): red() for i in reds}
    causes = rank_causes(G, statuses, limit=n)
    assert {c["target"] for c in causes} == {cid(i) for i in reds}
    if any(c["dependencies_healthy"] for c in causes):
        assert causes[0]["dependencies_healthy"]
    assert [c["rank"] for c in causes] == list(range(1, len(causes) + 1))


def test_apply_analysis_marks_the_map_without_touching_the_input():
    G = chain("api", "db")
    G.nodes[cid("db")]["status"] = "stopped"
    e = edge_target(cid("api"), cid("db"))
    statuses = {cid("db"): red(reason="exited while clients connect"),
                e: red(reason="connection refused: 3 of 3 connects failed"),
                "host:h": {"status": "critical", "own_status": "ok",
                           "reasons": ["db: exited while clients connect"]}}
    causes = rank_causes(G, statuses)
    H = apply_analysis(G, statuses, causes)
    assert H.nodes[cid("db")]["status"] == "critical"
    assert H.nodes[cid("db")]["likely_cause"] is True
    assert H.nodes[cid("db")]["cause_rank"] == 1
    assert H.nodes[cid("api")]["likely_cause"] is False
    assert H.nodes[cid("api")]["reasons"] == []
    assert H.edges[cid("api"), cid("db")]["status"] == "critical"
    assert "connection refused" in H.edges[cid("api"), cid("db")]["reasons"][0]
    assert H.nodes["host:h"]["status"] == "critical"
    assert G.nodes[cid("db")]["status"] == "stopped"  # the input is unchanged
    assert "reasons" not in G.edges[cid("api"), cid("db")]


def test_apply_analysis_maps_container_edges_onto_service_edges():
    G = nx.DiGraph()
    G.add_node(cid("api"), type="container", status="ok", parent=None)
    G.add_node(cid("db"), type="container", status="ok", parent=None)
    svc = "service:container%3Ah%3Adb:5432/tcp"
    G.add_node(svc, type="service", parent=cid("db"), status="ok")
    G.add_edge(cid("api"), svc, status="ok")
    H = apply_analysis(G, {edge_target(cid("api"), cid("db")): red()}, [])
    assert H.edges[cid("api"), svc]["status"] == "critical"
