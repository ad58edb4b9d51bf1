"""A past view shows what the live map showed then (issue 23), on real
containers: a collector traces them through eBPF into a real Redis, and
``manage.py graph --at`` (the API and the time slider's source) is asked
about moments of the scenario afterwards.

- client1 makes 250 connections to a server and exits; a quiet pause; client2
  makes 150. Inside the pause client1 -> server is on the past map with 250;
  before client1 started it is not; at the end both edges, 250 and 150, the
  same as the live map.
- A container whose health check fails (its probe file not empty), then
  passes again (the analyzer runs):
  a past view inside its red time shows it red with its reasons (and its
  rank among the likely causes), one after the recovery ok.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import wait_collector_in_ebpf_mode, wait_for
from tests.processes import LoggedProcess

pytestmark = [pytest.mark.ebpf, pytest.mark.docker]

HOST = "past-host"
STEP = 5.0  # PORTOLAN_HISTORY_STEP's default: one fine snapshot every 5 s


@pytest.fixture
def env(redis_server, tmp_path):
    env = dict(os.environ)
    env.update(REDIS_URL=redis_server.url, PORTOLAN_HOST_ID=HOST,
               PORTOLAN_VAR_DIR=str(tmp_path), PORTOLAN_INTERVAL="0.5")
    return env


def start(name, argv, env, repo_root):
    return LoggedProcess(name, [sys.executable, *argv], cwd=repo_root,
                         env=env).start()


def graph(env, repo_root, at=None, level="container"):
    argv = [sys.executable, "manage.py", "graph", "--level", level, "--format",
            "json"]
    if at is not None:
        argv += ["--at", str(at)]
    out = subprocess.run(argv, cwd=repo_root, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def edges_by_name(g) -> dict[tuple[str, str], dict]:
    names = {n["id"]: n.get("name") for n in g["nodes"]}
    return {(names[e["source"]], names[e["target"]]): e for e in g["links"]}


def node_by_name(g, name) -> dict | None:
    return next((n for n in g["nodes"] if n.get("name") == name), None)


def wait_past(seconds: float) -> None:
    """Let a moment become history: the collector reports it, then a fine
    snapshot after it is written."""
    time.sleep(seconds)


def timeline(client, around: float, container) -> list:
    """The fine history's steps near ``around``: (ts, since, connections of
    ``container``), times relative to it, for a failure's message."""
    from collector.history_format import decode_history, keyframe_of
    from collector.schema import Keys, container_node_id
    from webapp.topology.store import read_keyframes

    node = container_node_id(HOST, container.id)

    rows = []
    blobs = client.zrangebyscore(Keys().history(HOST, "fine"), around - 30,
                                 around + 30)
    frames = read_keyframes(client, Keys(), HOST, blobs)
    for blob in blobs:
        snap = decode_history(blob, frames.get(keyframe_of(blob)))
        conns = sum(v for f, v in (snap.get("counts") or {}).items()
                    if f.startswith(node + "\t") and f.endswith("\tconnections"))
        rows.append((round(snap["ts"] - around, 2),
                     round((snap.get("since") or 0) - around, 2), conns))
    return rows


def test_a_quiet_edge_stays_on_the_past_map_with_its_totals(
    ebpf_ready, containers, redis_client, env, repo_root
):
    server = containers.run("httpd -f -p 8080 -h /var/www")
    ip = containers.ip(server)
    proc = start("test_past_view-collector", ["-m", "collector", "--duration",
                                              "180"], env, repo_root)
    try:
        wait_collector_in_ebpf_mode(redis_client, HOST, proc)
        wait_past(2 * STEP)  # some history before anyone connects
        before = time.time()
        time.sleep(1)
        client1 = containers.run(
            f"for i in $(seq 250); do wget -q -O /dev/null http://{ip}:8080/ "
            "|| exit 1; done")
        assert client1.wait(timeout=120)["StatusCode"] == 0
        exited = time.time()
        # The pause: 14 s in which nobody talks. Its moment: late enough that
        # the history step it falls in is quiet (a step before it still
        # holds client1's last connections).
        time.sleep(2 * STEP + 4)
        pause = time.time() - 1.5
        client2 = containers.run(
            f"for i in $(seq 150); do wget -q -O /dev/null http://{ip}:8080/ "
            "|| exit 1; done")
        assert client2.wait(timeout=120)["StatusCode"] == 0
        wait_past(2 * STEP)
        end = time.time()
        live = edges_by_name(graph(env, repo_root))
        proc.assert_alive("the collector died during the test")
    finally:
        proc.stop()
    one, two = (client1.name, server.name), (client2.name, server.name)
    assert live[one]["connections"] == 250 and live[two]["connections"] == 150

    then = edges_by_name(graph(env, repo_root, at=pause))
    assert one in then, f"client1 -> server missing in the pause: {list(then)}"
    assert then[one]["connections"] == 250
    assert then[one]["connections_per_s"] == 0, (
        exited - pause, timeline(redis_client, pause, client1))
    assert two not in then  # client2 had not started

    earlier = graph(env, repo_root, at=before)
    assert node_by_name(earlier, server.name) is not None  # the map was there
    assert one not in edges_by_name(earlier)

    last = edges_by_name(graph(env, repo_root, at=end))
    assert last[one]["connections"] == 250
    assert last[two]["connections"] == 150
    # The same edges as the live map at the end, with the same totals (among
    # this test's containers: others on this host come and go meanwhile).
    ours = {client1.name, client2.name, server.name}
    mine = {pair: attrs for pair, attrs in live.items() if set(pair) <= ours}
    assert {pair for pair in last if set(pair) <= ours} == set(mine)
    for pair, attrs in mine.items():
        for counter in ("connections", "accepts", "failed", "bytes_sent",
                        "bytes_received"):
            assert last[pair][counter] == attrs[counter], (pair, counter)


def held_status(status, tries: int = 30):
    """A status and a moment within which it held: read before and after the
    moment, and the same both times. The patient's cause rank counts the
    host's other containers in trouble (other tests' come and go), so a single
    read and a time taken after it may straddle an analyzer step that moved it."""
    for _ in range(tries):
        before = status()
        at = time.time()
        if status() == before:
            return before, at
    raise AssertionError(f"the status never held over two reads: {before}")


def test_a_past_view_shows_the_statuses_of_its_time(
    ebpf_ready, containers, redis_client, env, repo_root
):
    patient = containers.run(
        "sleep 600", healthcheck={
            "test": ["CMD-SHELL", "test ! -s /tmp/sick"],
            "interval": 1_000_000_000, "timeout": 1_000_000_000, "retries": 1,
            "start_period": 0})
    collector = start("test_past_view-collector", ["-m", "collector",
                                                   "--duration", "180"],
                      env, repo_root)
    analyzer = start("test_past_view-analyzer", ["manage.py", "analyze",
                                                 "--duration", "180"],
                     env, repo_root)

    def status():
        node = node_by_name(graph(env, repo_root), patient.name)
        return node and (node["status"], node.get("reasons") or [],
                         node.get("cause_rank"))

    try:
        wait_collector_in_ebpf_mode(redis_client, HOST, collector)
        assert wait_for(lambda: (status() or ("",))[0] == "ok", timeout=60,
                        interval=1), (status(), analyzer.describe())
        patient.exec_run(["sh", "-c", "echo sick > /tmp/sick"])
        assert wait_for(lambda: (status() or ("",))[0] == "critical", timeout=60,
                        interval=0.5), (status(), analyzer.describe())
        red_live, red_at = held_status(status)
        time.sleep(3)
        patient.exec_run(["sh", "-c", ": > /tmp/sick"])
        assert wait_for(lambda: (status() or ("",))[0] == "ok", timeout=60,
                        interval=0.5), (status(), analyzer.describe())
        ok_at = time.time() + 1
        wait_past(2 * STEP)
        collector.assert_alive("the collector died during the test")
        analyzer.assert_alive("the analyzer died during the test")
    finally:
        analyzer.stop()
        collector.stop()
    then = node_by_name(graph(env, repo_root, at=red_at), patient.name)
    assert then["status"] == "critical"
    assert any("health check failing" in r for r in then["reasons"]), then
    assert then["reasons"] == red_live[1]
    # The likely causes of that time with them: ranked as it was live.
    assert then["cause_rank"] == red_live[2] and then["likely_cause"] == (
        red_live[2] is not None)
    after = node_by_name(graph(env, repo_root, at=ok_at), patient.name)
    assert after["status"] == "ok" and after["reasons"] == [], after
