"""History in a real Redis and a real Redis Cluster: the graph as it was at
time T, rates, retention."""

from collections import Counter

from collector.flow_fields import canonical_flow_fields
from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state, read_state_at

KEYS = Keys("portolan")


def report(host, containers, flows=None, interval=1.0):
    return HostReport(
        host=HostRecord(id=host, hostname=host),
        containers=[ContainerRecord(id=c, name=f"n-{c}", state="running",
                                    ips=[ip]) for c, ip in containers],
        addrs={ip: container_node_id(host, c) for c, ip in containers},
        flows=Counter(flows or {}),
        interval=interval,
    )


def test_time_travel_returns_the_earlier_graph(redis_backend):
    url, redis_client = redis_backend
    policy = HistoryPolicy(step=5, fine=900, coarse_step=60, window=3600)
    rep = RedisReporter(reporter_client(url), KEYS, history=policy)
    key = FlowKey(container_node_id("h", "a"), "out", "10.1.0.3", 80)
    t0 = 1_000_000.0
    # 0..20 s: a talks to b; from 30 s on, a is gone and c has appeared.
    for t in range(0, 21):
        rep.report(report("h", [("a", "10.1.0.2"), ("b", "10.1.0.3")],
                          {(key, "connections"): 2}), now=t0 + t)
    for t in range(30, 41):
        rep.report(report("h", [("b", "10.1.0.3"), ("c", "10.1.0.4")]), now=t0 + t)

    then = build_graph(read_state_at(redis_client, KEYS, t0 + 12, 5, 60), "container")
    names = {d["name"] for _, d in then.nodes(data=True) if d["type"] == "container"}
    assert names == {"n-a", "n-b"}
    edge = then.edges[container_node_id("h", "a"), container_node_id("h", "b")]
    # The totals as the live map had them at the snapshot of t0+10 (11
    # reports of 2), the rate over its 5 s step.
    assert edge["connections"] == 22
    assert edge["connections_per_s"] == 2.0

    later = build_graph(read_state_at(redis_client, KEYS, t0 + 40, 5, 60), "container")
    names = {d["name"] for _, d in later.nodes(data=True) if d["type"] == "container"}
    assert {"n-b", "n-c"} <= names and "n-a" not in names
    # What the live map showed then: the same nodes and edges (a's flow
    # outlives a's record there too), with the same totals.
    live = build_graph(read_state(redis_client, KEYS, ttl=10, now=t0 + 40),
                       "container")
    assert set(later.nodes) == set(live.nodes)
    assert set(later.edges) == set(live.edges)
    for u, v in live.edges:
        assert later.edges[u, v]["connections"] == live.edges[u, v]["connections"]

    # Live: only hosts heard from recently; the expired host stays in history.
    assert not read_state(redis_client, KEYS, ttl=10, now=t0 + 100).hosts
    assert read_state_at(redis_client, KEYS, t0 + 12, 5, 60).hosts


def test_history_is_downsampled_and_trimmed(redis_backend):
    url, redis_client = redis_backend
    policy = HistoryPolicy(step=1, fine=60, coarse_step=30, window=300)
    rep = RedisReporter(reporter_client(url), KEYS, history=policy)
    t0 = 2_000_000.0
    for t in range(0, 400):
        rep.report(report("h", [("a", "10.1.0.2")]), now=t0 + t)
    fine = redis_client.zrange(KEYS.history("h", "fine"), 0, -1, withscores=True)
    coarse = redis_client.zrange(KEYS.history("h", "coarse"), 0, -1, withscores=True)
    # Fine: every second of the last 60 s. Coarse: every 30 s of the last 300 s.
    assert [s for _, s in fine] == [t0 + t for t in range(340, 400)]
    assert [s for _, s in coarse] == [t0 + t for t in range(120, 400, 30)]
    # A time only the coarse history covers still answers.
    old = read_state_at(redis_client, KEYS, t0 + 250, 1, 30)
    assert list(old.containers["h"]) == ["a"]


def test_rates_are_per_second_of_the_last_interval(redis_backend):
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS)
    key = FlowKey(container_node_id("h", "a"), "out", "10.1.0.3", 80)
    rep.report(report("h", [("a", "10.1.0.2"), ("b", "10.1.0.3")],
                      {(key, "connections"): 30, (key, "bytes_sent"): 3000},
                      interval=2.0))
    G = build_graph(read_state(redis_client, KEYS, ttl=10), "container")
    edge = G.edges[container_node_id("h", "a"), container_node_id("h", "b")]
    assert edge["connections_per_s"] == 15.0 and edge["bytes_sent_per_s"] == 1500.0
    assert edge["connections"] == 30


def test_a_past_view_has_the_totals_the_live_map_had(redis_backend):
    """At any time T, fine or coarse, the past flows are the live flows hash
    as it stood at the snapshot T falls in: every flow (quiet ones too) with
    its totals, across keyframes, and after Redis lost everything."""
    import random

    url, redis_client = redis_backend
    policy = HistoryPolicy(step=5, fine=60, coarse_step=20, window=300,
                           keyframe=60)
    rep = RedisReporter(reporter_client(url), KEYS, history=policy)
    rng = random.Random(7)
    flows = [FlowKey(container_node_id("h", "a"), "out", f"10.1.0.{i}", 80)
             for i in range(3, 9)]
    containers = [("a", "10.1.0.2")] + [(f"s{i}", f"10.1.0.{i}") for i in range(3, 9)]
    t0 = 3_000_000.0
    live_at: dict[float, dict[str, int]] = {}

    def check(times) -> int:
        fine = [s for _, s in redis_client.zrange(KEYS.history("h", "fine"), 0, -1,
                                                  withscores=True)]
        coarse = [s for _, s in redis_client.zrange(KEYS.history("h", "coarse"),
                                                    0, -1, withscores=True)]
        checked = 0
        for at in [t0 + t + 0.5 for t in times]:
            # The tier read_state_at takes: fine when a fine snapshot is
            # within two steps before ``at``, else coarse.
            near = [s for s in fine if at - 10 <= s <= at]
            shown = max(near) if near else max(s for s in coarse if s <= at)
            state = read_state_at(redis_client, KEYS, at, 5, 20)
            got = {f"{k.node}\t{k.direction}\t{k.ip}\t{k.port}\t{k.proto}\t{c}": v
                   for (_h, k), counters in state.flows.items()
                   for c, v in counters.items()}
            assert got == live_at[shown], (at - t0, shown - t0, bool(near))
            checked += 1
        return checked

    checked = 0
    for t in range(0, 400):
        # Each flow talks now and then: most steps see only some of them.
        deltas = {(k, "connections"): rng.randint(1, 9) for k in flows
                  if rng.random() < 0.1}
        if t == 200:
            checked += check(range(60, 200, 3))  # coarse, then fine
            redis_client.flushall()  # Redis lost everything (no persistence)
        assert rep.report(report("h", containers, deltas), now=t0 + t)
        live_at[t0 + t] = canonical_flow_fields(
            "h", [c.decode() for c in redis_client.hkeys(KEYS.containers("h"))],
            redis_client.hgetall(KEYS.flows("h")), int,
            redis_client.hgetall(KEYS.ids("h")))
    checked += check(range(201, 400, 3))
    assert checked > 100


def test_the_coarse_tier_keeps_an_edge_of_any_moment_of_its_minute(redis_backend):
    url, redis_client = redis_backend
    policy = HistoryPolicy(step=5, fine=60, coarse_step=60, window=3600)
    rep = RedisReporter(reporter_client(url), KEYS, history=policy)
    key = FlowKey(container_node_id("h", "a"), "out", "10.1.0.3", 80)
    containers = [("a", "10.1.0.2"), ("b", "10.1.0.3")]
    t0 = 4_000_000.0
    # Two seconds of traffic early in the second minute, then quiet for long
    # enough that only the coarse tier covers that minute.
    for t in range(0, 400):
        flows = {(key, "connections"): 30} if t in (65, 66) else {}
        rep.report(report("h", containers, flows), now=t0 + t)
    assert redis_client.zrangebyscore(KEYS.history("h", "fine"), 0, t0 + 330) == []
    G = build_graph(read_state_at(redis_client, KEYS, t0 + 125, 5, 60), "container")
    edge = G.edges[container_node_id("h", "a"), container_node_id("h", "b")]
    assert edge["connections"] == 60
    assert edge["connections_per_s"] == 1.0  # 60 over that minute
    # Minutes later, quiet: still on the map with its totals, as live.
    G = build_graph(read_state_at(redis_client, KEYS, t0 + 250, 5, 60), "container")
    edge = G.edges[container_node_id("h", "a"), container_node_id("h", "b")]
    assert edge["connections"] == 60 and edge["connections_per_s"] == 0
    # Before it talked it was not there.
    G = build_graph(read_state_at(redis_client, KEYS, t0 + 30, 5, 60), "container")
    assert not G.has_edge(container_node_id("h", "a"), container_node_id("h", "b"))
