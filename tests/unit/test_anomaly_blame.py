"""Blame by port: which side of a failing edge is at fault (pure rules)."""

import networkx as nx

from collector.schema import service_node_id
from webapp.anomalies.cause import rank_causes
from webapp.anomalies.config import Config
from webapp.anomalies.keys import edge_target
from webapp.anomalies.memory import Memory, remember
from webapp.anomalies.merge import NO_ANALYZER, Verdict, apply_verdict
from webapp.anomalies.rules import Context, evaluate_rules
from webapp.anomalies.status import StatusTracker, roll_up
from webapp.topology.graph import coarsen

HOST = "host:h"
CONF = Config()


def cid(name):
    return f"container:h:{name}"


def sid(name, port):
    return service_node_id(cid(name), port, "tcp")


def services_graph(serves, calls):
    """A service-level graph: ``serves`` name -> ports listened on now (and
    ``ports`` seen before), ``calls`` (client, server, port, counters)."""
    S = nx.DiGraph()
    S.add_node(HOST, id=HOST, type="host", name="h", status="ok", parent=None)
    for name, (now, seen) in serves.items():
        S.add_node(cid(name), id=cid(name), type="container", name=name,
                   status="ok", parent=HOST, state="running", metrics={},
                   ports=sorted(set(now) | set(seen)),
                   processes=[{"pid": 1, "port": p, "proto": "tcp"} for p in now]
                   or [{"pid": 1, "port": None}])
    for client, server, port, counters in calls:
        S.add_node(sid(server, port), id=sid(server, port), type="service",
                   parent=cid(server), port=port, proto="tcp", status="ok",
                   name=f"{server}:{port}/tcp")
        S.add_edge(cid(client), sid(server, port), **counters)
    return S


class Steps:
    """The analyzer's evaluation without Redis: rules, hysteresis, roll-up."""

    def __init__(self):
        self.memory = Memory.new(CONF)
        self.tracker = StatusTracker(CONF.raise_after, CONF.clear_after)

    def step(self, S, now):
        G = coarsen(S, "container")
        ctx = Context(CONF, self.memory, now, S)
        results = evaluate_rules(G, ctx)
        assert results.failed_checks == []
        self.tracker.update(results.findings, now)
        remember(G, self.memory, CONF, now, S)
        statuses = roll_up(G, self.tracker.own_statuses())
        return G, statuses, rank_causes(G, statuses)


def refused(t, n=5):
    return {"connections": 0, "failed": n * t, "failed_refused": n * t,
            "failed_per_s": n}


def good(t, n=5):
    return {"connections": n * t, "failed": 0, "connections_per_s": n}


def test_a_port_nothing_ever_served_is_the_clients_fault():
    steps = Steps()
    for t in range(1, 5):
        S = services_graph({"api": ([80], []), "front": ([], []), "batch": ([], [])},
                           [("front", "api", 80, good(t)),
                            ("batch", "api", 9999, refused(t))])
        G, st, causes = steps.step(S, float(t))
    reason = st[cid("batch")]["reasons"][0]
    assert reason.startswith("calls port 9999 on api, which nothing serves")
    assert st[edge_target(cid("batch"), cid("api"))]["status"] == "critical"
    assert st[cid("api")]["status"] == "ok"
    assert "batch calls port 9999" in st[cid("api")]["notes"][0]
    assert [c["target"] for c in causes] == [cid("batch")]


def test_a_port_served_then_stopped_is_the_servers_fault():
    steps = Steps()
    for t in range(1, 4):
        S = services_graph({"api": ([80, 81], []), "cli": ([], [])},
                           [("cli", "api", 80, good(t)), ("cli", "api", 81, good(t))])
        steps.step(S, float(t))
    for t in range(4, 6):
        S = services_graph({"api": ([80], [81]), "cli": ([], [])},
                           [("cli", "api", 80, good(t)),
                            ("cli", "api", 81, {**good(3), **refused(t - 3)})])
        G, st, causes = steps.step(S, float(t))
    reasons = st[cid("api")]["reasons"]
    assert st[cid("api")]["status"] == "critical"
    assert reasons[0].startswith("service :81 stopped listening (was served until ")
    assert causes[0]["target"] == cid("api")


def test_without_an_analyzer_nothing_claims_ok():
    S = services_graph({"api": ([80], []), "cli": ([], [])},
                       [("cli", "api", 80, good(1))])
    G = coarsen(S, "container")
    G.nodes[cid("cli")]["status"] = "stopped"  # Docker's fact is kept
    H = apply_verdict(G, Verdict({}, [], False))
    assert H.nodes[cid("api")]["status"] == "unknown"
    assert H.nodes[cid("api")]["reasons"] == [NO_ANALYZER]
    assert H.nodes[cid("cli")]["status"] == "stopped"
    assert H.edges[cid("cli"), cid("api")]["status"] == "unknown"


def test_edges_take_the_analyzers_windowed_status_not_the_last_interval():
    S = services_graph({"api": ([80], []), "cli": ([], [])},
                       [("cli", "api", 80, {**good(1), "failed_per_s": 3})])
    G = coarsen(S, "container")
    assert G.edges[cid("cli"), cid("api")]["status"] == "warning"  # the rates'
    H = apply_verdict(G, Verdict({}, [], True))
    assert H.edges[cid("cli"), cid("api")]["status"] == "ok"


def chain():
    """front -> api -> db, all ok by Docker; db ranked first, explaining both."""
    G = nx.DiGraph([(cid("front"), cid("api")), (cid("api"), cid("db"))])
    for n in G:
        G.nodes[n].update(type="container", name=n.rsplit(":", 1)[1], status="ok")
    causes = [{"target": cid("db"), "name": "db", "rank": 1,
               "reasons": ["exited with code 137 (killed)"],
               "explains": [cid("api"), cid("front")]}]
    return G, causes


def test_nodes_a_cause_explains_say_because_of_it():
    G, causes = chain()
    warned = {"status": "warning", "reasons": ["calls to db fail"]}
    statuses = {cid("front"): warned, cid("api"): warned,
                cid("db"): {"status": "critical", "reasons": ["exited"]}}
    H = apply_verdict(G, Verdict(statuses, causes, True))
    assert H.nodes[cid("front")]["because_of"] == {
        "target": cid("db"), "name": "db", "reason": "exited with code 137 (killed)"}
    assert H.nodes[cid("api")]["because_of"]["target"] == cid("db")
    assert "because_of" not in H.nodes[cid("db")]
    assert H.nodes[cid("db")]["cause_rank"] == 1


def test_a_caller_still_ok_is_not_said_to_be_in_trouble_because_of_the_cause():
    # api's edge to db is red at once; api's own warning waits for its
    # hysteresis: meanwhile api is green and must not say "because of db".
    G, causes = chain()
    statuses = {cid("api"): {"status": "ok", "reasons": []},
                cid("front"): {"status": "warning", "reasons": ["calls fail"]},
                edge_target(cid("api"), cid("db")): {"status": "critical",
                                                     "reasons": ["refused"]}}
    H = apply_verdict(G, Verdict(statuses, causes, True))
    assert H.nodes[cid("api")]["status"] == "ok"
    assert "because_of" not in H.nodes[cid("api")]
    assert H.nodes[cid("front")]["because_of"]["target"] == cid("db")
    # Red by Docker's word alone (critical), it is in trouble: it says why.
    G.nodes[cid("api")]["status"] = "critical"
    H = apply_verdict(G, Verdict(statuses, causes, True))
    assert H.nodes[cid("api")]["because_of"]["target"] == cid("db")
