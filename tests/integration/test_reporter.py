"""RedisReporter against a real redis-server and a real Redis Cluster:
merging, outages, exactly-once."""

from collections import Counter

import redis

from collector.history_format import (
    decode_history,
    decode_keyframe,
    history_flow_names,
    keyframe_of,
)
from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    make_flow_field,
)
from tests.conftest import RedisServer, wait_for
from webapp.topology.graph import build_graph
from webapp.topology.store import read_keyframes, read_state

KEYS = Keys("portolan")


def stored_history(client, host: str, tier: str) -> list[dict]:
    """Every snapshot of one history tier, decoded against its keyframe."""
    rows = client.zrange(KEYS.history(host, tier), 0, -1)
    frames = read_keyframes(client, KEYS, host, rows)
    return [decode_history(b, frames.get(keyframe_of(b))) for b in rows]


def report_for(host, cid, ip, flows=None):
    return HostReport(
        host=HostRecord(id=host, hostname=host, mode="ebpf"),
        containers=[ContainerRecord(id=cid, name=f"name-{cid}", state="running",
                                    ips=[ip])],
        addrs={ip: container_node_id(host, cid)},
        flows=Counter(flows or {}),
    )


def test_two_collectors_merge_into_one_graph(redis_backend):
    url, redis_client = redis_backend
    a = RedisReporter(reporter_client(url), KEYS)
    b = RedisReporter(reporter_client(url), KEYS)
    key = FlowKey(container_node_id("hostA", "ca"), "out", "10.9.0.2", 80)
    assert a.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 4}))
    assert b.report(report_for("hostB", "cb", "10.9.0.2"))
    assert a.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 6}))
    state = read_state(redis_client, KEYS, ttl=10)
    assert set(state.hosts) == {"hostA", "hostB"}
    G = build_graph(state, "container")
    edge = G.edges[container_node_id("hostA", "ca"), container_node_id("hostB", "cb")]
    assert edge["connections"] == 10


def test_malformed_entries_are_skipped_not_fatal(redis_backend):
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS)
    assert rep.report(report_for("hostA", "ca", "10.9.0.1"))
    redis_client.hset(KEYS.containers("hostA"), "evil", "{not json")
    redis_client.hset(KEYS.flows("hostA"), "garbage\tfield", 3)
    redis_client.zadd(KEYS.collectors, {"bad host id": 9e12})
    state = read_state(redis_client, KEYS, ttl=10)
    assert list(state.containers["hostA"]) == ["ca"]
    assert list(state.hosts) == ["hostA"]


def test_metrics_are_kept_apart_from_records_and_read_back_merged(
        redis_backend, caplog):
    """A container's metrics (moving every report) in ``P:metrics``, the rest
    of its record (seldom moving) in ``P:containers``; readers merge them, read
    an older collector's records (metrics inside) as they are, and keep a
    record whose metrics are malformed, without them."""
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS)
    busy = {"cpu_cores": 0.25, "memory_usage_bytes": 7 << 20, "pids": 3}
    report = report_for("hostA", "ca", "10.9.0.1")
    report.containers[0].metrics = busy
    report.containers.append(ContainerRecord(id="cb", name="idle", state="exited"))
    assert rep.report(report)
    held = redis_client.hgetall(KEYS.containers("hostA"))
    assert set(held) == {b"ca", b"cb"}
    assert not any(b"metrics" in v for v in held.values())
    assert redis_client.hgetall(KEYS.container_metrics("hostA")) == {
        b"ca": b'{"cpu_cores":0.25,"memory_usage_bytes":7340032,"pids":3}'}
    state = read_state(redis_client, KEYS, ttl=10)
    assert state.containers["hostA"]["ca"].metrics == busy
    assert state.containers["hostA"]["ca"].name == "name-ca"
    assert state.containers["hostA"]["cb"].metrics == {}

    # An older collector: the whole record in one field, no P:metrics.
    older = ContainerRecord(id="co", name="old", state="running",
                            metrics={"pids": 9})
    redis_client.hset(KEYS.containers("hostA"), "co", older.to_json())
    redis_client.hset(KEYS.container_metrics("hostA"), "cb", "[not an object]")
    state = read_state(redis_client, KEYS, ttl=10)
    assert state.containers["hostA"]["co"].metrics == {"pids": 9}
    assert state.containers["hostA"]["cb"].metrics == {}
    assert state.containers["hostA"]["cb"].name == "idle"
    assert "malformed container metrics" in caplog.text


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
        # The 1 went with Redis' data; the reporter still held it, and sends
        # it again: every count it took is in Redis once.
        assert state.flows[("hostA", key)]["connections"] == 151
        assert (rep.lost_batches, rep.lost_counts) == (0, 0)
    finally:
        server.stop()


def reply_lost(rep, landed: bool):
    """Make ``rep``'s next transactions fail without an answer, after landing
    in Redis (``landed``) or before reaching it; returns the undo."""
    real_pipeline = rep.client.pipeline

    def pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute

        def no_answer(*a, **k):
            if landed:
                execute(*a, **k)
            raise redis.TimeoutError("the reply was lost")
        pipe.execute = no_answer
        return pipe

    rep.client.pipeline = pipeline

    def undo():
        rep.client.pipeline = real_pipeline
        rep._next_attempt = 0  # do not wait out the backoff in a test
    return undo


def test_batch_whose_reply_was_lost_is_not_added_twice(redis_backend):
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS)
    key = FlowKey(container_node_id("hostA", "ca"), "out", "10.9.0.2", 80)
    undo = reply_lost(rep, landed=True)
    assert not rep.report(report_for("hostA", "ca", "10.9.0.1",
                                      {(key, "connections"): 5}))
    undo()
    assert rep.report(report_for("hostA", "ca", "10.9.0.1", {(key, "connections"): 1}))
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostA", key)]["connections"] == 6
    # And a batch that did not land is sent again.
    undo = reply_lost(rep, landed=False)
    assert not rep.report(report_for("hostA", "ca", "10.9.0.1",
                                      {(key, "connections"): 7}))
    undo()
    assert rep.report(report_for("hostA", "ca", "10.9.0.1"))
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostA", key)]["connections"] == 13
    assert rep.lost_counts == 0


def host_keys(host: str) -> list[str]:
    return [KEYS.host(host), KEYS.containers(host), KEYS.container_metrics(host),
            KEYS.addrs(host),
            KEYS.flows(host), KEYS.rates(host), KEYS.history(host, "fine"),
            KEYS.history(host, "coarse"), KEYS.applied(host)]


def test_acknowledged_batch_that_a_failover_lost_is_sent_again(redis_backend):
    """A replica promoted before it copied the last write: Redis acknowledged
    the batch, then lost it. The reporter's next write finds it missing and
    sends it again, once."""
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS,
                        history=HistoryPolicy(step=5, coarse_step=5))
    key = FlowKey(container_node_id("hostF", "cf"), "out", "10.9.0.2", 80)
    t0 = 4_000_000.0
    assert rep.report(report_for("hostF", "cf", "10.9.0.1",
                                 {(key, "connections"): 1}), now=t0)
    # What the replica holds: the host's keys after the first write.
    replica = {k: (redis_client.dump(k), redis_client.pttl(k))
               for k in host_keys("hostF")}
    assert rep.report(report_for("hostF", "cf", "10.9.0.1",
                                 {(key, "connections"): 10}), now=t0 + 5)
    for k, (blob, ttl) in replica.items():  # the replica takes over
        redis_client.delete(k)
        if blob is not None:
            redis_client.restore(k, max(ttl, 0), blob)
    assert read_state(redis_client, KEYS, ttl=1e12).flows[("hostF", key)][
        "connections"] == 1
    for i, n in enumerate((100, 1000)):
        assert rep.report(report_for("hostF", "cf", "10.9.0.1",
                                     {(key, "connections"): n}), now=t0 + 10 + i)
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows[("hostF", key)]["connections"] == 1111
    assert rep.lost_counts == 0
    # The lost batch's history snapshot is written again too (with the next).
    field = make_flow_field(key, "connections")
    counts = [s["counts"].get(field, 0)
              for s in stored_history(redis_client, "hostF", "fine")]
    assert sum(counts) == 1111, counts


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
        redis_backend):
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS,
                        history=HistoryPolicy(step=5, coarse_step=5))
    key = FlowKey(container_node_id("hostH", "ch"), "out", "10.9.0.2", 80)
    field = make_flow_field(key, "connections")
    t0 = 3_000_000.0
    assert rep.report(report_for("hostH", "ch", "10.9.0.1",
                                 {(key, "connections"): 1}), now=t0)
    undo = reply_lost(rep, landed=True)
    assert not rep.report(report_for("hostH", "ch", "10.9.0.1",
                                     {(key, "connections"): 10}), now=t0 + 5)
    undo()
    assert rep.report(report_for("hostH", "ch", "10.9.0.1",
                                 {(key, "connections"): 100}), now=t0 + 10)
    for kind in ("fine", "coarse"):
        snapshots = stored_history(redis_client, "hostH", kind)
        counts = [s["counts"].get(field, 0) for s in snapshots]
        assert counts == [1, 10, 100], (kind, counts)
    assert read_state(redis_client, KEYS, ttl=1e12).flows[("hostH", key)][
        "connections"] == 111


def test_keyframe_comes_early_when_the_flows_outgrow_it(redis_backend):
    """A host that starts with one flow writes a keyframe with one flow; when
    twenty more come, the next coarse step writes a keyframe with all of them
    (not 10 min later), and the snapshots after it name no flow. A few more
    flows on a full keyframe do not bring one forward."""
    url, redis_client = redis_backend
    rep = RedisReporter(reporter_client(url), KEYS)  # default history policy
    flows = [FlowKey(container_node_id("hostK", "ck"), "out", f"10.9.1.{i}", 80)
             for i in range(26)]
    t0 = 4_000_000.0

    def report(at, keys):
        assert rep.report(report_for("hostK", "ck", "10.9.0.1",
                                     {(k, "connections"): 1 for k in keys}),
                          now=t0 + at)

    def keyframes():
        rows = redis_client.zrange(KEYS.history("hostK", "totals"), 0, -1,
                                   withscores=True)
        return [(ts - t0, len(decode_keyframe(b)["flows"])) for b, ts in rows]

    report(0, flows[:1])
    assert keyframes() == [(0, 1)]
    for at in range(5, 125, 5):
        report(at, flows[:21])
    assert keyframes() == [(0, 1), (60, 21)]
    last = redis_client.zrange(KEYS.history("hostK", "fine"), -1, -1)[0]
    assert keyframe_of(last) == t0 + 60
    assert not history_flow_names(last), "a snapshot still names its flows"
    snapshot = stored_history(redis_client, "hostK", "fine")[-1]
    assert len(snapshot["counts"]) == 21
    for at in range(125, 245, 5):  # five new flows against 21 known
        report(at, flows[:26])
    assert keyframes() == [(0, 1), (60, 21)]


def test_vanished_host_leaves_the_live_graph(redis_backend):
    url, redis_client = redis_backend
    ttl = 1
    rep = RedisReporter(reporter_client(url), KEYS)
    rep.report(report_for("hostA", "ca", "10.9.0.1"), now=1000.0)
    assert read_state(redis_client, KEYS, ttl=ttl, now=1000.5).hosts
    assert not read_state(redis_client, KEYS, ttl=ttl, now=1002.0).hosts


def test_a_containers_flows_keep_its_whole_id_after_its_record_is_gone(
        redis_backend):
    """Docker ids go into the flow hashes short; the host's ids hash keeps
    them whole for every reader, after the container's record has gone too,
    and for a collector that starts again."""
    url, redis_client = redis_backend
    cid = "9c" * 32
    key = FlowKey(container_node_id("hostG", cid), "out", "10.9.0.2", 80)
    rep = RedisReporter(reporter_client(url), KEYS)
    assert rep.report(report_for("hostG", cid, "10.9.0.1", {(key, "connections"): 2}))
    assert redis_client.hgetall(KEYS.ids("hostG")) == {cid[:12].encode(): cid.encode()}
    assert all(cid.encode() not in f for f in redis_client.hkeys(KEYS.flows("hostG")))
    gone = report_for("hostG", cid, "10.9.0.1", {(key, "connections"): 3})
    gone.containers = []
    assert rep.report(gone)
    again = RedisReporter(reporter_client(url), KEYS)  # a restarted collector
    gone.flows = Counter({(key, "connections"): 5})
    assert again.report(gone)
    state = read_state(redis_client, KEYS, ttl=1e12)
    assert state.flows == {("hostG", key): {"connections": 10}}
    assert redis_client.hlen(KEYS.flows("hostG")) == 1
