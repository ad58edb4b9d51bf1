"""RedisReporter against a real redis-server: merging, outages, exactly-once."""

from collections import Counter

import redis

from collector.reporter import HistoryPolicy, HostReport, InDoubt, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    decode_snapshot,
    make_flow_field,
)
from tests.conftest import RedisServer, wait_for
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state

KEYS = Keys("portolan")


def report_for(host, cid, ip, flows=None):
    return HostReport(
        host=HostRecord(id=host, hostname=host, mode="ebpf"),
        containers=[ContainerRecord(id=cid, name=f"name-{cid}", state="running",
                                    ips=[ip])],
        addrs={ip: container_node_id(host, cid)},
        flows=Counter(flows or {}),
    )


def test_two_collectors_merge_into_one_graph(redis_client, redis_server):
    a = RedisReporter(reporter_client(redis_server.url), KEYS)
    b = RedisReporter(reporter_client(redis_server.url), KEYS)
    key = FlowKey(container_node_id("hostA", "ca"), "out", "10.9.0.2", 80)
    assert a.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 4}))
    assert b.report(report_for("hostB", "cb", "10.9.0.2"))
    assert a.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 6}))
    state = read_state(redis_client, KEYS, ttl=10)
    assert set(state.hosts) == {"hostA", "hostB"}
    G = build_graph(state, "container")
    edge = G.edges[container_node_id("hostA", "ca"), container_node_id("hostB", "cb")]
    assert edge["connections"] == 10


def test_malformed_entries_are_skipped_not_fatal(redis_client, redis_server):
    rep = RedisReporter(reporter_client(redis_server.url), KEYS)
    assert rep.report(report_for("hostA", "ca", "10.9.0.1"))
    redis_client.hset(KEYS.containers("hostA"), "evil", "{not json")
    redis_client.hset(KEYS.flows("hostA"), "garbage\tfield", 3)
    redis_client.zadd(KEYS.collectors, {"bad host id": 9e12})
    state = read_state(redis_client, KEYS, ttl=10)
    assert list(state.containers["hostA"]) == ["ca"]
    assert list(state.hosts) == ["hostA"]


def test_redis_outage_loses_no_count():
    server = RedisServer()
    server.start()
    try:
        rep = RedisReporter(reporter_client(server.url), KEYS)
        key = FlowKey(container_node_id("hostA", "ca"), "out", "10.9.0.2", 80)
        assert rep.report(report_for("hostA", "ca", "10.9.0.1",
                                     {(key, "connections"): 1}))
        server.stop()
        for _ in range(5):
            rep._next_attempt = 0  # do not wait out the backoff in a test
            assert not rep.report(report_for("hostA", "ca", "10.9.0.1",
                                             {(key, "connections"): 10}))
        assert not rep.connected
        server.start()  # same port, empty: as after a restart without persistence
        rep._next_attempt = 0
        # The 100 go in once; should the client need another attempt to
        # reconnect, it is retried with nothing new.
        assert rep.report(report_for("hostA", "ca", "10.9.0.1",
                                     {(key, "connections"): 100})) or wait_for(
            lambda: rep.report(report_for("hostA", "ca", "10.9.0.1")))
        client = redis.Redis.from_url(server.url)
        state = read_state(client, KEYS, ttl=10)
        assert state.flows[("hostA", key)]["connections"] == 150
    finally:
        server.stop()


def test_batch_whose_reply_was_lost_is_not_added_twice(redis_client, redis_server):
    rep = RedisReporter(reporter_client(redis_server.url), KEYS)
    key = FlowKey(container_node_id("hostA", "ca"), "out", "10.9.0.2", 80)
    batch = Counter({(key, "connections"): 5})
    report = report_for("hostA", "ca", "10.9.0.1")
    rep._write(report, InDoubt("hostA", "batch-1", batch), 1.0)  # landed, but
    rep.in_doubt = InDoubt("hostA", "batch-1", batch)  # pretend no answer came
    assert rep.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 1}))
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostA", key)]["connections"] == 6
    # And a batch that did not land is put back.
    rep.in_doubt = InDoubt("hostA", "never-written", Counter({(key, "connections"): 7}))
    assert rep.report(report_for("hostA", "ca", "10.9.0.1"))
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostA", key)]["connections"] == 13


def test_refused_writes_lose_no_count(redis_client, redis_server):
    """Redis up but refusing writes (out of memory here; a read-only replica
    after a failover is the same): counts wait, nothing raises."""
    rep = RedisReporter(reporter_client(redis_server.url), KEYS)
    key = FlowKey(container_node_id("hostR", "cr"), "out", "10.9.0.2", 80)
    assert rep.report(report_for("hostR", "cr", "10.9.0.1", {(key, "connections"): 1}))
    redis_client.config_set("maxmemory", 1)
    try:
        for _ in range(3):
            rep._next_attempt = 0
            assert not rep.report(report_for("hostR", "cr", "10.9.0.1",
                                             {(key, "connections"): 10}))
        assert not rep.connected
    finally:
        redis_client.config_set("maxmemory", 0)
    rep._next_attempt = 0
    assert rep.report(report_for("hostR", "cr", "10.9.0.1",
                                 {(key, "connections"): 100}))
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostR", key)]["connections"] == 131


def test_history_of_a_write_whose_reply_was_lost_is_not_counted_twice(
        redis_client, redis_server):
    rep = RedisReporter(reporter_client(redis_server.url), KEYS,
                        history=HistoryPolicy(step=5, coarse_step=5))
    key = FlowKey(container_node_id("hostH", "ch"), "out", "10.9.0.2", 80)
    field = make_flow_field(key, "connections")
    real_pipeline = rep.client.pipeline

    def reply_lost_pipeline(*args, **kwargs):
        """Its transaction lands in Redis, then the reply is lost."""
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute

        def landed_then_lost(*a, **k):
            execute(*a, **k)
            raise redis.TimeoutError("the reply was lost")
        pipe.execute = landed_then_lost
        return pipe

    t0 = 3_000_000.0
    assert rep.report(report_for("hostH", "ch", "10.9.0.1",
                                 {(key, "connections"): 1}), now=t0)
    rep.client.pipeline = reply_lost_pipeline
    assert not rep.report(report_for("hostH", "ch", "10.9.0.1",
                                     {(key, "connections"): 10}), now=t0 + 5)
    rep.client.pipeline = real_pipeline
    rep._next_attempt = 0
    assert rep.report(report_for("hostH", "ch", "10.9.0.1",
                                 {(key, "connections"): 100}), now=t0 + 10)
    for kind in ("fine", "coarse"):
        snapshots = [decode_snapshot(raw) for raw in
                     redis_client.zrange(KEYS.history("hostH", kind), 0, -1)]
        counts = [s["counts"].get(field, 0) for s in snapshots]
        assert counts == [1, 10, 100], (kind, counts)
    assert read_state(redis_client, KEYS, ttl=1e12).flows[("hostH", key)][
        "connections"] == 111


def test_vanished_host_leaves_the_live_graph(redis_client, redis_server):
    ttl = 1
    rep = RedisReporter(reporter_client(redis_server.url), KEYS)
    rep.report(report_for("hostA", "ca", "10.9.0.1"), now=1000.0)
    assert read_state(redis_client, KEYS, ttl=ttl, now=1000.5).hosts
    assert not read_state(redis_client, KEYS, ttl=ttl, now=1002.0).hosts
