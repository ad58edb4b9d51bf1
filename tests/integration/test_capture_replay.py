"""Capture and replay on a real Redis: a capture of a real collector replays
into the same graph at the same history times; bad files stop at the bad
block with everything before it replayed; several files merge."""

import os
import signal
import subprocess
import sys
import time

import pytest

from collector.capture.format import (
    CaptureError,
    CaptureReader,
    CaptureWriter,
    Header,
    Report,
)
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    make_flow_field,
)
from tests.conftest import wait_collector_in_ebpf_mode, wait_for
from tests.processes import LoggedProcess
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state, read_state_at

ORIGINAL, REPLAYED = Keys("portolan"), Keys("replayed")
T0 = 1_750_000_000.0
STEPS_COMPARED = 5  # history steps of a real collector's capture compared


def manage(env, repo_root, *args, **kwargs):
    return subprocess.run([sys.executable, "manage.py", *map(str, args)],
                          cwd=repo_root, env=env, capture_output=True, text=True,
                          **kwargs)


@pytest.fixture
def env(redis_server, tmp_path):
    return dict(os.environ, REDIS_URL=redis_server.url,
                PORTOLAN_VAR_DIR=str(tmp_path), PORTOLAN_KEY_PREFIX="replayed")


def comparable(G):
    """Nodes and edges with what a replay must reproduce (not its mark)."""
    nodes = {n: {k: v for k, v in d.items() if k != "replay"}
             for n, d in G.nodes(data=True)}
    edges = {(u, v): dict(d) for u, v, d in G.edges(data=True)}
    return nodes, edges


def differences(got, want) -> list:
    """What differs between two comparable graphs, item by item."""
    out = []
    for part, g, w in zip(("nodes", "edges"), got, want, strict=True):
        for key in sorted(set(g) | set(w), key=str):
            if g.get(key) != w.get(key):
                a, b = g.get(key) or {}, w.get(key) or {}
                out.append((part, key, {k: (a.get(k), b.get(k)) for k in
                                        set(a) | set(b) if a.get(k) != b.get(k)}))
    return out


def calls_counted(client, server_ip: str) -> tuple[int, int] | None:
    """``(connections to :8080, failed connects to :8081)`` the collector has
    written for calls to ``server_ip``, once they are the client's 30 and 1."""
    flows = read_state(client, ORIGINAL, ttl=1e9).flows

    def total(port, counter):
        return sum(c.get(counter, 0) for (_, key), c in flows.items()
                   if key.ip == server_ip and key.port == port)

    counted = total(8080, "connections"), total(8081, "failed")
    return counted if counted[0] >= 30 and counted[1] >= 1 else None


def captured_until(path) -> float:
    """The newest record time in the blocks the capture has written so far
    (a block still being written reads as truncated: not yet)."""
    try:
        with CaptureReader(path) as reader:
            return max((b.last for b in reader.block_infos()), default=0.0)
    except CaptureError:
        return 0.0


@pytest.mark.ebpf
@pytest.mark.docker
def test_capture_of_a_real_collector_replays_into_the_same_graph(
        ebpf_ready, containers, redis_client, env, repo_root, tmp_path):
    collector_env = dict(env, PORTOLAN_KEY_PREFIX="portolan",
                         PORTOLAN_HOST_ID="capture-host", PORTOLAN_INTERVAL="0.5",
                         PORTOLAN_HISTORY_STEP="1")
    path = tmp_path / "run.capture"
    collector = LoggedProcess("test_capture_replay-collector",
                              [sys.executable, "-m", "collector"], cwd=repo_root,
                              env=collector_env)
    capture = LoggedProcess("test_capture_replay-capture",
                            [sys.executable, "manage.py", "capture", "-w", path],
                            cwd=repo_root, env=collector_env)
    try:
        collector.start()
        wait_collector_in_ebpf_mode(redis_client, "capture-host", collector,
                                    timeout=90)
        server = containers.run("httpd -f -p 8080 -h /var/www")
        server_ip = containers.ip(server)
        capture.start()
        # Following the change notices: its subscription is the marker.
        assert wait_for(lambda: redis_client.pubsub_numsub(ORIGINAL.changes)[0][1]
                        or not capture.alive, timeout=60), capture.describe()
        capture.assert_alive("the capture exited before the calls")
        subscribed = time.time()
        # The client stays up until its calls are counted (its last is refused:
        # a failed connect), so the collector can name it. (No ``wget -T``:
        # the test image's busybox wget crashes on it, before connecting.)
        containers.run(
            f"for i in $(seq 30); do wget -q -O /dev/null http://{server_ip}:8080/;"
            " sleep 0.2; done; wget -q -O /dev/null http://"
            f"{server_ip}:8081/; sleep 600")
        assert wait_for(lambda: calls_counted(redis_client, server_ip)
                        or not collector.alive, timeout=90), (
            f"calls to {server_ip}: ", {
                k: c for k, c in read_state(redis_client, ORIGINAL,
                                            ttl=1e9).flows.items()
                if k[1].port in (8080, 8081)}, collector.describe())
        # Enough history steps while the capture follows to compare them: a
        # slow machine makes fewer of them during the calls.
        assert wait_for(lambda: redis_client.zcount(
            ORIGINAL.history("capture-host", "fine"), subscribed, "+inf")
            >= STEPS_COMPARED + 3 or not collector.alive, timeout=90)
        collector.assert_alive("the collector exited while counting the calls")
        collector.proc.send_signal(signal.SIGINT)
        assert collector.wait(timeout=30) == 0, collector.describe()
        # Every report the collector made is in the file before the capture
        # stops: its newest record is the last report (it flushes every 5 s).
        last_report = redis_client.zscore(ORIGINAL.collectors, "capture-host")
        assert wait_for(lambda: captured_until(path) >= last_report
                        or not capture.alive, timeout=60), (
            f"captured until {captured_until(path)}, last report {last_report}; "
            f"{capture.describe()}")
        capture.proc.send_signal(signal.SIGINT)  # Ctrl-C: a valid file
        assert capture.wait(timeout=30) == 0, capture.describe()
    finally:
        collector.stop()
        capture.stop()
    records = list(CaptureReader(path).records())
    assert len(records) > 10, capture.describe()

    done = manage(env, repo_root, "replay", "--fast", "--keep-times", path)
    assert done.returncode == 0, done.stderr

    # Totals: every count the collector wrote, written again.
    original = read_state(redis_client, ORIGINAL, ttl=1e9)
    replayed = read_state(redis_client, REPLAYED, ttl=1e9)
    assert replayed.flows == original.flows
    assert any(c.get("connections", 0) >= 30 for c in replayed.flows.values())
    assert replayed.containers == original.containers
    host = replayed.hosts["capture-host"]
    # Traced with eBPF, and replayed as such (the mode is the recording's).
    assert original.hosts["capture-host"].mode == host.mode == "ebpf"
    assert host.replay["file"] == "run.capture"
    assert host.replay["offset"] == 0.0

    # History: the same steps at the same times, each the same graph.
    times = [s for _, s in redis_client.zrange(
        REPLAYED.history("capture-host", "fine"), 0, -1, withscores=True)]
    original_times = {s for _, s in redis_client.zrange(
        ORIGINAL.history("capture-host", "fine"), 0, -1, withscores=True)}
    # (The first is the replay's own: a keyframe of the totals it starts from.)
    assert len(times) > 5 and set(times[1:]) <= original_times
    compared = 0
    for at in times[2:]:  # the first step began before the capture did
        for level in ("container", "service"):
            want = build_graph(read_state_at(redis_client, ORIGINAL, at, 1, 60),
                               level)
            got = build_graph(read_state_at(redis_client, REPLAYED, at, 1, 60),
                              level)
            bad = differences(comparable(got), comparable(want))
            assert not bad, (at, level, str(bad)[:3000])
            compared += 1
    assert compared >= 2 * STEPS_COMPARED


def report(ts, host="h1", n=1):
    key = FlowKey(container_node_id(host, "a"), "out", "10.9.0.3", 80)
    field = make_flow_field(key, "connections")
    return Report(ts=ts, host=HostRecord(id=host, hostname=host),
                  containers=[ContainerRecord(id="a", name=f"{host}-a",
                                              state="running", ips=["10.9.0.2"])],
                  addrs={"10.9.0.2": container_node_id(host, "a")},
                  flows={field: n}, rates={field: float(n)}, history=("fine",))


def write_blocks(path, blocks):
    with CaptureWriter(path, Header(hosts=["h1"], created=T0)) as w:
        for records in blocks:
            for r in records:
                w.write(r)
            w.flush()
    return path


def second_block_offset(path):
    with CaptureReader(path) as reader:
        return [i.offset for i in reader.block_infos()][1]


def corrupt_flip(path):
    data = bytearray(path.read_bytes())
    data[second_block_offset(path) + 40] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[:second_block_offset(path) + 30])


@pytest.mark.parametrize("damage, words", [
    (corrupt_flip, "checksum mismatch"),
    (corrupt_truncate, "truncated block"),
])
def test_a_bad_block_keeps_what_came_before(redis_client, env, repo_root, tmp_path,
                                            damage, words):
    path = write_blocks(tmp_path / "bad.capture", [
        [report(T0 + i, n=1) for i in range(3)],
        [report(T0 + 3 + i, n=100) for i in range(3)],
    ])
    damage(path)
    done = manage(env, repo_root, "replay", "--fast", "--keep-times", path)
    assert done.returncode != 0
    assert f"{path}: block 1" in done.stderr and words in done.stderr, done.stderr
    assert "everything before it was replayed" in done.stderr
    # Block 0 is all in, nothing of block 1.
    flows = redis_client.hgetall(REPLAYED.flows("h1"))
    assert list(flows.values()) == [b"3"]
    times = [s for _, s in redis_client.zrange(REPLAYED.history("h1", "fine"), 0, -1,
                                               withscores=True)]
    assert times == [T0, T0 + 1, T0 + 2]


@pytest.mark.parametrize("content, words", [
    (b"", "empty file"),
    (b"GIF89a not a capture at all", "not a Portolan capture"),
])
def test_not_a_capture_is_refused_by_name(redis_client, env, repo_root, tmp_path,
                                          content, words):
    path = tmp_path / "x.capture"
    path.write_bytes(content)
    done = manage(env, repo_root, "replay", "--fast", path)
    assert done.returncode != 0
    assert f"{path}: header: {words}" in done.stderr, done.stderr
    assert redis_client.dbsize() == 0


def test_files_of_several_hosts_merge(redis_client, env, repo_root, tmp_path):
    a = write_blocks(tmp_path / "a.capture", [[report(T0 + i, "h1") for i in
                                                range(3)]])
    b = write_blocks(tmp_path / "b.capture", [[report(T0 + i + 0.5, "h2") for i in
                                                range(3)]])
    done = manage(env, repo_root, "replay", "--fast", a, b)
    assert done.returncode == 0, done.stderr
    state = read_state(redis_client, REPLAYED, ttl=60)
    assert set(state.hosts) == {"h1", "h2"}
    assert state.hosts["h2"].replay["file"] == "b.capture"
    # --fast without --keep-times: the capture ends now.
    assert abs(state.last_seen["h2"] - time.time()) < 30


def test_paced_replay_follows_the_clock_and_loops(redis_client, env, repo_root,
                                                  tmp_path):
    path = write_blocks(tmp_path / "a.capture", [[report(T0 + i) for i in range(3)]])
    proc = subprocess.Popen([sys.executable, "manage.py", "replay", "--speed", "2",
                             "--loop", path], cwd=repo_root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # 3 reports, 1 s apart at 2x: a pass every ~1.5 s, counts keep growing.
        assert wait_for(lambda: int(next(iter(redis_client.hgetall(
            REPLAYED.flows("h1")).values()), 0)) >= 6, timeout=15)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "passes" in out


def test_capture_info_and_past_window(redis_client, env, repo_root, tmp_path):
    # A collector's history (written through the real reporter by a replay).
    src = write_blocks(tmp_path / "src.capture", [[report(T0 + i) for i in
                                                    range(10)]])
    assert manage(env, repo_root, "replay", "--fast", "--keep-times",
                  src).returncode == 0
    out = tmp_path / "window.capture"
    done = manage(env, repo_root, "capture", "-w", out, "--since", T0 + 3,
                  "--until", T0 + 6)
    assert done.returncode == 0, done.stderr
    records = list(CaptureReader(out).records())
    assert [r.ts for r in records] == [T0 + 3, T0 + 4, T0 + 5, T0 + 6]
    assert sum(records[0].base.values()) == 3  # what came before the window
    info = manage(env, repo_root, "capture", "--info", out)
    assert info.returncode == 0, info.stderr
    assert "version  1" in info.stdout and "hosts    h1" in info.stdout
    assert "4 reports" in info.stdout and "(3 s)" in info.stdout
    bad = manage(env, repo_root, "capture", "--info", tmp_path / "missing")
    assert bad.returncode != 0 and "cannot open" in bad.stderr
