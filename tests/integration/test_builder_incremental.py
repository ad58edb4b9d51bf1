"""The builder's incremental diffs, applied to its stored snapshot, equal a
full build of the same Redis at every step, on every level (a real Redis; a
small fleet whose flows change at random).

To the last float, except at the host level: a full build sums a host edge's
rates container edge by container edge (``coarsen``), an update flow by flow,
so a sum may differ in its last digit there.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.integration.test_builder import stored_payload
from webapp.anomalies.keys import AnalysisKeys, edge_target
from webapp.builder.builder import BuilderSettings, GraphBuilder
from webapp.builder.levels import LEVELS

HOSTS = ("inc-h1", "inc-h2", "inc-h3")
PER_HOST = 4


def ip_of(h: int, c: int) -> str:
    return f"10.77.{h}.{c + 2}"


def fleet() -> tuple[dict, dict, list]:
    """Containers by host, address indexes by host, and flows: each container
    calls two others (an ``out`` record, and the server's own ``in`` record
    on its host, which the known client's record already counts), some call
    outside, and some are called from outside (an ``in`` record alone, which
    the map turns around; one such client is its edge's only flow)."""
    rng = random.Random(7)
    containers = {h: [ContainerRecord(id=f"{h}-c{c}", name=f"{h}-app{c}",
                                      state="running", ips=[ip_of(i, c)],
                                      ports=[8000 + c])
                      for c in range(PER_HOST)] for i, h in enumerate(HOSTS)}
    addrs = {h: {ip_of(i, c): container_node_id(h, f"{h}-c{c}")
                 for c in range(PER_HOST)} for i, h in enumerate(HOSTS)}
    flows = []  # (host that records it, FlowKey)
    for i, h in enumerate(HOSTS):
        for c in range(PER_HOST):
            node = container_node_id(h, f"{h}-c{c}")
            for _ in range(2):
                j, d = rng.randrange(len(HOSTS)), rng.randrange(PER_HOST)
                flows.append((h, FlowKey(node, "out", ip_of(j, d), 8000 + d)))
                server = container_node_id(HOSTS[j], f"{HOSTS[j]}-c{d}")
                flows.append((HOSTS[j], FlowKey(server, "in", ip_of(i, c),
                                                8000 + d)))
            if c % 2:
                flows.append((h, FlowKey(node, "out", "203.0.113.7", 443)))
            else:
                for client in ("198.51.100.4", "198.51.100.5"):
                    flows.append((h, FlowKey(node, "in", client, 8000 + c)))
            if c == 2:  # the only flow of its edge, turned around
                flows.append((h, FlowKey(node, "in", "192.0.2.10", 8000 + c)))
    return containers, addrs, flows


@pytest.fixture
def reporters(redis_server):
    out = {h: RedisReporter(reporter_client(redis_server.url), Keys("portolan"))
           for h in HOSTS}
    yield out
    for reporter in out.values():
        reporter.client.close()


def report_round(reporters, containers, addrs, flows, share: float, rng) -> None:
    """Every host reports; each flow has traffic with probability ``share``."""
    deltas = {h: Counter() for h in HOSTS}
    for host, key in flows:
        if rng.random() < share:
            deltas[host][(key, "connections")] += rng.randint(1, 9)
            deltas[host][(key, "bytes_sent")] += rng.randint(1, 99999)
            deltas[host][(key, "bytes_received")] += rng.randint(1, 99999)
    for h, reporter in reporters.items():
        assert reporter.report(HostReport(
            host=HostRecord(id=h, hostname=h), containers=containers[h],
            addrs=addrs[h], flows=deltas[h], interval=0.7))


def by_id(payload: dict) -> tuple[list, list]:
    return (sorted(payload["nodes"], key=lambda n: n["id"]),
            sorted(payload["links"], key=lambda e: (e["source"], e["target"])))


def assert_same(level: str, got: dict, expected: dict) -> None:
    """Equal; at the host level, floats within a few units of their last
    digit (see the module docstring)."""
    got, expected = by_id(got), by_id(expected)
    if level != "host":
        assert got == expected, level
        return
    assert got[0] == expected[0]
    assert len(got[1]) == len(expected[1])
    for a, b in zip(got[1], expected[1], strict=True):
        assert a.keys() == b.keys(), (a, b)
        for key, value in a.items():
            if isinstance(value, float) or isinstance(b[key], float):
                assert math.isclose(value, b[key], rel_tol=1e-12), (key, a, b)
            else:
                assert value == b[key], (key, a, b)


def built(reporters, redis_client, seed: int):
    """The test fleet reported once with every flow, and a builder that built
    it: ``(builder, containers, addrs, flows, rng)``."""
    containers, addrs, flows = fleet()
    rng = random.Random(seed)
    builder = GraphBuilder(redis_client, BuilderSettings(all_levels=True,
                                                         snapshot_interval=600))
    report_round(reporters, containers, addrs, flows, 1.0, rng)
    builder.step(set(HOSTS))
    return builder, containers, addrs, flows, rng


def move_metrics(containers: dict, rng, share: float) -> None:
    """Some containers' cgroup metrics moved since the last report."""
    for records in containers.values():
        for record in records:
            if rng.random() < share:
                record.metrics = {
                    "cpu_cores": round(rng.random(), 4),
                    "memory_working_set_bytes": rng.randint(1, 1 << 30)}


def test_stored_diffs_equal_a_full_build_at_every_step(reporters, redis_client):
    builder, containers, addrs, flows, rng = built(reporters, redis_client, 3)
    for share in (0.05, 0.3, 1.0, 0.0, 0.5, 1.0):
        move_metrics(containers, rng, share)
        report_round(reporters, containers, addrs, flows, share, rng)
        # Reports arrive over several steps, as the live builder sees them.
        builder.step({HOSTS[0]})
        builder.step(set(HOSTS[1:]))
        full = GraphBuilder(redis_client, BuilderSettings(all_levels=True))
        full.update(set(HOSTS))  # built, not stored
        for level in LEVELS:
            expected = full.views[level].graph.payload()
            assert_same(level, stored_payload(redis_client, level), expected)
            assert_same(level, builder.views[level].graph.payload(), expected)
    assert builder.full_builds == 1, \
        "counters and metrics alone moved: no full rebuild"


def publish_verdict(client, statuses: dict, causes: list, at: float) -> None:
    """As the analyzer publishes (``Analyzer.publish``): statuses, then the
    causes with the time that says whether an analyzer is running."""
    keys = AnalysisKeys("portolan")
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.status)
    if statuses:
        pipe.hset(keys.status, mapping={t: json.dumps(e) for t, e in statuses.items()})
    pipe.set(keys.causes, json.dumps({"ts": at, "causes": causes}))
    pipe.execute()


def test_a_new_verdict_is_judged_again_without_a_rebuild(reporters, redis_client):
    """The analyzer's word changes most seconds in a fleet (a reason quotes a
    figure): every level, judged again in place, equals a full build with
    the same verdict, and no step rebuilds."""
    # no analyzer yet: every status unknown
    builder, containers, addrs, flows, rng = built(reporters, redis_client, 5)
    owner = {ip: n for by_ip in addrs.values() for ip, n in by_ip.items()}
    # b is called by caller (an edge of both); a and c are two others
    caller, b = next((k.node, owner[k.ip]) for _, k in flows
                     if k.direction == "out" and k.ip in owner
                     and owner[k.ip] != k.node)
    a, c = sorted(set(owner.values()) - {caller, b})[:2]
    red = {"status": "critical", "reasons": ["refused 12 of 40"]}
    verdicts = [  # (statuses, causes, seconds before now it was published)
        ({}, [], 0.0),  # an analyzer, all well
        ({a: {"status": "warning", "reasons": ["memory 91 %"], "notes": ["n"]},
          b: red, edge_target(caller, b): red, c: {"status": "ok", "notes": ["x"]}},
         [{"target": b, "rank": 1, "name": "b", "reasons": ["down"],
           "explains": [caller, a]}], 0.0),
        ({a: {"status": "warning", "reasons": ["memory 93 %"]},  # its figure moved
          b: red, edge_target(caller, b): red},
         [{"target": b, "rank": 1, "name": "b", "reasons": ["down"],
           "explains": [caller]}], 0.0),  # a is no longer explained
        ({caller: red}, [], 0.0),
        ({caller: red}, [], 3600.0),  # the analyzer stopped: no verdict
        ({}, [], 0.0),
    ]
    for i, (statuses, causes, age) in enumerate(verdicts):
        publish_verdict(redis_client, statuses, causes, time.time() - age)
        if i % 2:  # with counters moving in the same step, or alone
            report_round(reporters, containers, addrs, flows, 0.3, rng)
        builder.step(set(HOSTS))
        full = GraphBuilder(redis_client, BuilderSettings(all_levels=True))
        full.update(set(HOSTS))
        assert full.analysis == builder.analysis, "the same verdict read"
        for level in LEVELS:
            expected = full.views[level].graph.payload()
            assert_same(level, stored_payload(redis_client, level), expected)
            assert_same(level, builder.views[level].graph.payload(), expected)
        statuses_seen = {n["status"] for n
                         in builder.views["container"].graph.nodes.values()}
        assert ("unknown" in statuses_seen) == (age > 0), (i, statuses_seen)
    assert builder.full_builds == 1, "a new verdict alone: no full rebuild"


def test_a_costly_rebuild_is_paced_and_counters_move_meanwhile(reporters,
                                                                redis_client):
    """A new flow changes the levels' shape. Where a rebuild costs much (a
    fleet), the next one waits ``rebuild_pacing`` times that cost; the
    existing edges keep their counters current meanwhile, and the rebuild
    then gives the whole map."""
    builder, containers, addrs, flows, rng = built(reporters, redis_client, 11)
    assert builder.full_builds == 1
    builder.build_cost = 2.0  # as at 10,000 containers: 8 s between rebuilds
    new = (HOSTS[1], FlowKey(container_node_id(HOSTS[1], f"{HOSTS[1]}-c3"), "in",
                             "198.51.100.99", 8003))
    report_round(reporters, containers, addrs, [*flows, new], 1.0, rng)
    builder.step(set(HOSTS))
    assert builder.full_builds == 1 and builder.reshaped, "the rebuild waits"
    full = GraphBuilder(redis_client, BuilderSettings(all_levels=True))
    full.update(set(HOSTS))
    held = builder.views["container"].graph
    expected = full.views["container"].graph
    assert len(expected.links) == len(held.links) + 1, "the new edge waits"
    for edge, link in held.links.items():
        assert link == expected.links[edge], "every other edge is current"
    builder.built_at -= 8.0  # the paced time has passed
    builder.step(set(HOSTS))
    assert builder.full_builds == 2 and not builder.reshaped
    for level in LEVELS:
        assert_same(level, stored_payload(redis_client, level),
                    full.views[level].graph.payload())


def metric_ids(diff: dict) -> set[str]:
    """Nodes whose metrics a diff redraws (moved figures, or whole nodes)."""
    return {n["id"] for part in ("updated_metrics", "updated_nodes")
            for n in diff.get(part, ()) if "metrics" in n}


def test_moved_metrics_wait_their_turn_and_flows_never_wait(reporters,
                                                           redis_client):
    """With more nodes' metrics moving than ``metric_nodes_per_s`` allows, a
    second redraws that many, longest waiting first; flows' counters are
    not held back meanwhile; once the metrics rest, every level catches up
    with a full build."""
    containers, addrs, flows = fleet()
    rng = random.Random(11)
    builder = GraphBuilder(redis_client, BuilderSettings(
        all_levels=True, snapshot_interval=600, metric_nodes_per_s=5))
    report_round(reporters, containers, addrs, flows, 1.0, rng)
    builder.step(set(HOSTS), now=100.0)
    every = {container_node_id(h, r.id) for h, rs in containers.items()
             for r in rs}

    move_metrics(containers, rng, 1.0)
    report_round(reporters, containers, addrs, flows, 0.5, rng)
    diff = builder.update(set(HOSTS), now=101.0)["container"]
    first = metric_ids(diff)
    assert len(first) == 5 and first < every
    assert diff["updated_links"], "flow counters are never held back"
    assert len(builder.metrics_due) == len(every) - 5

    move_metrics(containers, rng, 1.0)  # all move again: the waiting go first
    report_round(reporters, containers, addrs, flows, 0.0, rng)
    second = metric_ids(builder.update(set(HOSTS), now=102.0)["container"])
    assert len(second) == 5 and not second & first
    assert builder.metrics_lag(102.0) == 1.0  # the rest waited a second

    for now in (103.0, 104.0, 105.0):  # nothing moves any more
        builder.step(set(), now=now)
    assert not builder.metrics_due and builder.metrics_lag(105.0) == 0.0
    full = GraphBuilder(redis_client, BuilderSettings(all_levels=True))
    full.update(set(HOSTS))
    for level in LEVELS:
        assert_same(level, builder.views[level].graph.payload(),
                    full.views[level].graph.payload())
    assert builder.full_builds == 1


def test_metrics_alone_reach_the_map_without_parsing_a_record(
        reporters, redis_client, monkeypatch):
    """Collectors keep metrics apart (``P:metrics``): a round where only they
    moved parses no container record, and the nodes still get the figures;
    an older collector's records (metrics inside) are drawn as before."""
    builder, containers, addrs, flows, rng = built(reporters, redis_client, 13)
    older = HOSTS[0]  # writes as a collector from before P:metrics did

    def write_as_older(host: str) -> None:
        pipe = redis_client.pipeline(transaction=True)
        pipe.delete(Keys("portolan").container_metrics(host))
        pipe.hset(Keys("portolan").containers(host),
                  mapping={r.id: r.to_json() for r in containers[host]})
        pipe.execute()

    move_metrics(containers, rng, 1.0)
    report_round(reporters, containers, addrs, flows, 0.0, rng)
    write_as_older(older)
    builder.step(set(HOSTS))
    nodes = builder.views["container"].graph.nodes
    for host, records in containers.items():
        for r in records:
            assert nodes[container_node_id(host, r.id)]["metrics"] == r.metrics

    parsed = []
    real = ContainerRecord.from_json.__func__
    monkeypatch.setattr(ContainerRecord, "from_json", classmethod(
        lambda cls, text: parsed.append(text) or real(cls, text)))
    move_metrics(containers, rng, 1.0)
    report_round(reporters, containers, addrs, flows, 0.0, rng)
    write_as_older(older)
    diff = builder.update(set(HOSTS))["container"]
    assert len(parsed) == PER_HOST, "only the older collector's records"
    assert metric_ids(diff) == {container_node_id(h, r.id)
                                for h, rs in containers.items() for r in rs}
    for host, records in containers.items():
        for r in records:
            assert nodes[container_node_id(host, r.id)]["metrics"] == r.metrics
    assert builder.full_builds == 1
