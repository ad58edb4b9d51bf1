"""A Redis Cluster master killed mid-run: its replica takes over, and the
collector's reporter, the graph reads and the analyzer recover by themselves.
What the collector counted meanwhile is written exactly once, including a
batch the dead master acknowledged but never passed to its replica."""

import logging
import os
import signal
from collections import Counter

import pytest
import redis

from collector.redis_client import REDIS_ERRORS, redis_client
from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, FlowKey, HostRecord, Keys
from collector.schema import container_node_id as cnode
from tests.conftest import RedisClusterServers, require, wait_for
from webapp.anomalies.analyzer import Analyzer
from webapp.anomalies.config import load_config
from webapp.topology.store import read_state

KEYS = Keys("portolan")


@pytest.fixture
def cluster():
    """A cluster of its own: this test leaves one master dead."""
    require(os.path.exists("/usr/bin/redis-cli"), "redis-cli not installed")
    servers = RedisClusterServers()
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def report(host, n, key):
    return HostReport(
        host=HostRecord(id=host, hostname=host),
        containers=[ContainerRecord(id="c", name="fo-c", state="running",
                                    ips=["10.7.0.1"])],
        addrs={"10.7.0.1": cnode(host, "c")},
        flows=Counter({(key, "connections"): n}),
    )


def host_beside_the_analyzer(client) -> str:
    """A host id whose keys live on the master holding the analyzer's lock, so
    that one kill hits the reporter, the graph reads and the analyzer."""
    lock_node = client.get_node_from_key(KEYS.anomaly("lock"))
    for i in range(10_000):
        if client.get_node_from_key(KEYS.flows(f"fo-{i}")) == lock_node:
            return f"fo-{i}"
    raise AssertionError("no host id on the analyzer's master")


def test_killed_master_loses_no_count_and_everyone_recovers(cluster, caplog):
    caplog.set_level(logging.WARNING)
    web = redis_client(cluster.url, socket_timeout=3.0)  # as the web tier's
    host = host_beside_the_analyzer(web)
    key = FlowKey(cnode(host, "c"), "out", "10.7.0.2", 80)
    rep = RedisReporter(reporter_client(cluster.url), KEYS)
    analyzer = Analyzer(redis_client(cluster.url, socket_timeout=3.0), "portolan",
                        load_config({"lock_ttl": 3}), owner="a1")
    sent = 0

    def send(n):
        nonlocal sent
        sent += n
        return rep.report(report(host, n, key))

    assert send(1)
    assert analyzer.step() is not None and analyzer.leader
    master_node = web.get_node_from_key(KEYS.flows(host))
    master = redis.Redis(port=master_node.port)
    replica_port = int(master.info("replication")["slave0"]["port"])
    replica_pid = cluster.procs[replica_port].pid
    replica = redis.Redis(port=replica_port)
    assert wait_for(lambda: replica.info("replication")["slave_repl_offset"]
                    >= master.info("replication")["master_repl_offset"]), \
        "the replica never caught up with the first write"

    # The master acknowledges a batch its replica never gets, then dies.
    os.kill(replica_pid, signal.SIGSTOP)
    try:
        master.client_kill_filter(_type="replica")
        assert send(10)
        cluster.procs[master_node.port].send_signal(signal.SIGKILL)
        cluster.procs[master_node.port].wait(timeout=10)
    finally:
        os.kill(replica_pid, signal.SIGCONT)

    # The collector keeps counting through the failover, at its own pace,
    # until the batch the dead master lost is sent again: its loss logged,
    # then a write that left nothing pending.
    def resent():
        return (send(100) and "Redis lost 1 acknowledged batches" in caplog.text
                and not rep.pending and cluster.healthy())

    assert wait_for(resent, timeout=60, interval=0.2), (
        f"not re-sent after the failover: pending {sum(rep.pending.values())}, "
        f"connected {rep.connected}; log:\n{caplog.text[-2000:]}")
    assert replica_port in cluster.masters()

    # The web tier's client finds the new master by itself.
    def total():
        try:
            state = read_state(web, KEYS, ttl=30)
        except REDIS_ERRORS:
            return None
        return state.flows.get((host, key), {}).get("connections")

    assert wait_for(lambda: total() == sent, timeout=20), (total(), sent)
    assert (rep.lost_batches, rep.lost_counts) == (0, 0)

    # And the analyzer leads again on the promoted replica.
    def analysed():
        try:
            return analyzer.step() is not None
        except REDIS_ERRORS:
            return False

    assert wait_for(analysed, timeout=20, interval=0.5)
    assert analyzer.client.get(KEYS.anomaly("lock")) == b"a1"
    assert cluster.crossslot_errors() == 0
