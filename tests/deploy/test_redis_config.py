"""The Redis Portolan ships (deploy/redis.conf): every way of starting it reads
the file, and on Debian's redis-server it keeps a busy host's flow hashes and
its history compact listpacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter

import pytest
import redis

from collector.reporter import HostReport, RedisReporter
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import free_port, require
from tests.deploy.stack import ROOT, kubernetes_documents

CONF = ROOT / "deploy/redis.conf"


def test_every_way_of_starting_redis_reads_the_settings():
    dockerfile = (ROOT / "Dockerfile.redis").read_text()
    assert "COPY deploy/redis.conf /etc/redis/portolan.conf" in dockerfile
    assert re.search(r'CMD \["redis-server", "/etc/redis/portolan.conf"', dockerfile)
    assert "!deploy/redis.conf" in (ROOT / ".dockerignore").read_text()
    assert 'redis-server "$PWD/deploy/redis.conf"' in (
        ROOT / "scripts/started.sh").read_text()
    # The StatefulSet (and docker-compose.yml) run the image's command.
    redis_set = next(d for d in kubernetes_documents(ROOT / "deploy/kubernetes")[
        "redis.yaml"] if d["kind"] == "StatefulSet")
    container = redis_set["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("portolan/redis:")
    assert "command" not in container and "args" not in container
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "image: portolan/redis:" in compose


@pytest.fixture
def shipped_redis(tmp_path):
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", str(CONF), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


HOST = "a-host.example.org"


def busy_host_report(flow_count: int = 300) -> HostReport:
    """A host of 20 Docker containers whose ``flow_count`` flows each made a
    connection and sent 100 bytes."""
    cids = [f"{i:02x}" * 32 for i in range(20)]
    flows = Counter()
    for i in range(flow_count):
        key = FlowKey(container_node_id(HOST, cids[i % 20]), "out",
                      f"10.{i % 7}.{i % 251}.{i % 13}", 1024 + i)
        flows[(key, "connections")] += 1
        flows[(key, "bytes_sent")] += 100
    records = [ContainerRecord(id=c, name=f"c{i}", state="running",
                               ips=[f"10.0.0.{i}"]) for i, c in enumerate(cids)]
    return HostReport(host=HostRecord(id=HOST), containers=records, flows=flows)


def test_a_busy_hosts_flow_hashes_stay_listpacks(shipped_redis):
    """300 flows of 20 Docker containers (600 fields, over the default 128
    entries): the settings and the short flow fields keep them compact."""
    assert shipped_redis.config_get("hash-max-listpack-*") == {
        "hash-max-listpack-entries": "1024", "hash-max-listpack-value": "512"}
    assert shipped_redis.config_get("save") == {"save": ""}
    host = HOST
    keys = Keys("portolan")
    reporter = RedisReporter(shipped_redis, keys)
    assert reporter.report(busy_host_report())
    assert shipped_redis.hlen(keys.flows(host)) == 600
    assert shipped_redis.object("encoding", keys.flows(host)) == b"listpack"
    assert shipped_redis.object("encoding", keys.rates(host)) == b"listpack"
    assert shipped_redis.object("encoding", keys.containers(host)) == b"listpack"


def _history_encodings(client) -> dict[str, bytes]:
    """A busy host's history after 15 minutes of reports every 5 s: the
    encoding of each of its history sorted sets."""
    keys = Keys("portolan")
    reporter = RedisReporter(client, keys)
    start = 1_800_000_000.0
    for step in range(180):
        assert reporter.report(busy_host_report(40), now=start + 5 * step)
    assert client.zcard(keys.history(HOST, "fine")) >= 170
    return {tier: client.object("encoding", keys.history(HOST, tier))
            for tier in ("fine", "coarse")}


def test_a_hosts_history_stays_listpacks(shipped_redis):
    """180 fine snapshots of a few hundred bytes (over the default 128 entries
    of 64 bytes): the settings keep each tier a listpack, without Redis' own
    ~130-190 B a skiplist entry costs."""
    assert shipped_redis.config_get("zset-max-listpack-*") == {
        "zset-max-listpack-entries": "256", "zset-max-listpack-value": "4096"}
    assert _history_encodings(shipped_redis) == {
        "fine": b"listpack", "coarse": b"listpack"}


def test_on_a_stock_redis_the_history_is_a_skiplist(redis_server):
    """The same history on redis-server's defaults: what the settings save."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        assert _history_encodings(client) == {
            "fine": b"skiplist", "coarse": b"skiplist"}
    finally:
        client.flushdb()
