"""Time to red and back to ok: real faults judged by the back end as `make run`
runs it (issue 20).

`python -m collector` and `manage.py analyze` run at their default intervals
(1 s) against a private Redis. PAIRS server/client container pairs run side by
side (the host's python; a client connects ten times a second); each pair's
server is killed (`docker kill`) and started again ROUNDS times. Per fault:

- red: from the kill to the server node critical in the analyzer's verdict
  (what the map, /api/graph/ and `manage.py graph` show), and to the client's
  edge critical;
- ok: from the server's start to the server, the edge and the client all ok;
- flaps: status changes of those targets beyond one red episode per fault,
  sampled every 0.1 s.

Goals: red within 5 s; ok within 30 s (the failure window, 10 s, plus five
clean steps, then whatever a restarted container needs to answer again); no
flaps.

    .venv/bin/python bench/fault_timing.py --pairs 4 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import redis  # noqa: E402

from collector.schema import Keys  # noqa: E402
from tests.conftest import (  # noqa: E402
    HOST_PROGRAM_MOUNTS,
    TEST_IMAGE,
    RedisServer,
    build_test_image,
    ensure_dockerd,
    wait_for,
)
from webapp.anomalies.keys import edge_target  # noqa: E402
from webapp.anomalies.merge import read_verdict  # noqa: E402
from webapp.topology.store import read_state  # noqa: E402

HOST_ID = "fault-bench"
RED_GOAL, OK_GOAL = 5.0, 30.0
VERBOSE = "--verbose" in sys.argv
SERVER = """
import socket
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 8080)); ls.listen(128)
while True:
    conn, _ = ls.accept(); conn.settimeout(1)
    try:
        conn.recv(64); conn.sendall(b"ok")
    except OSError:
        pass
    conn.close()
"""
CLIENT = """
import socket, sys, time
while True:
    try:
        with socket.create_connection((sys.argv[1], 8080), 1) as s:
            s.sendall(b"q"); s.recv(64)
    except OSError:
        pass
    time.sleep(0.1)
"""


def status(client, target: str) -> str:
    entry = read_verdict(client).statuses.get(target) or {}
    return entry.get("status", "ok")


def node_of(client, name: str) -> str | None:
    state = read_state(client, Keys(), ttl=30)
    for host, records in state.containers.items():
        for record in records.values():
            if record.name == name:
                return f"container:{host}:{record.id}"
    return None


class Pair:
    """One server and its client, and the figures of its faults."""

    def __init__(self, docker, url: str, volumes: dict, label: dict):
        run = dict(detach=True, labels=label, volumes=volumes)
        tag = uuid.uuid4().hex[:6]
        self.server = docker.containers.run(
            TEST_IMAGE, ["sh", "-c", "/usr/bin/python3 /prog/server.py"],
            name=f"fb-srv-{tag}", **run)
        self.server.reload()
        ip = next(iter(self.server.attrs["NetworkSettings"]["Networks"].values()))[
            "IPAddress"]
        self.client = docker.containers.run(
            TEST_IMAGE, ["sh", "-c", f"/usr/bin/python3 /prog/client.py {ip}"],
            name=f"fb-cli-{tag}", **run)
        self.redis = redis.Redis.from_url(url)
        self.red, self.edge_red, self.ok, self.flaps, self.missed = [], [], [], 0, 0

    def targets(self) -> list[str]:
        return [self.server_node, self.client_node,
                edge_target(self.client_node, self.server_node)]

    def settle(self) -> bool:
        self.server_node = wait_for(lambda: node_of(self.redis, self.server.name), 20)
        self.client_node = wait_for(lambda: node_of(self.redis, self.client.name), 20)
        if not (self.server_node and self.client_node):
            return False
        return bool(wait_for(self.all_ok, timeout=40, interval=0.2))

    def all_ok(self) -> bool:
        return all(status(self.redis, t) == "ok" for t in self.targets())

    def watch(self, seconds: float, until) -> tuple[float | None, list[str]]:
        """Sample the targets' statuses until ``until`` holds; (time, changes)."""
        start, seen, last = time.monotonic(), [], None
        self.timeline = []
        while time.monotonic() - start < seconds:
            now = tuple(status(self.redis, t) for t in self.targets())
            if now != last:
                seen.append(now)
                self.timeline.append((round(time.monotonic() - start, 1), now))
                last = now
            if until(now):
                return time.monotonic() - start, seen
            time.sleep(0.1)
        return None, seen

    def fault(self) -> None:
        self.server.kill()
        at = time.monotonic()
        red, changes = self.watch(15, lambda s: s[0] == "critical")
        edge, more = self.watch(15 - (red or 15), lambda s: s[2] == "critical")
        self.red.append(red)
        self.edge_red.append(None if edge is None or red is None else red + edge)
        changes += more
        time.sleep(max(0.0, 3 - (time.monotonic() - at)))
        self.server.start()
        ok, back = self.watch(40, lambda s: all(x == "ok" for x in s))
        self.ok.append(ok)
        if VERBOSE:
            print("back to ok (server, client, edge):", self.timeline, flush=True)
        # One way to red and one way back: any other red episode is a flap.
        sequence = [("ok",) * 3, *changes, *back]
        episodes = sum(1 for a, b in zip(sequence, sequence[1:], strict=False)
                       if "critical" in b and "critical" not in a)
        self.flaps += max(0, episodes - 1)
        if red is None or ok is None:
            self.missed += 1
        time.sleep(2)  # steady before the next fault

    def remove(self) -> None:
        for c in (self.client, self.server):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001, S110 - best-effort cleanup
                pass


def figures(name: str, values: list, goal: float) -> str:
    got = sorted(v for v in values if v is not None)
    if not got:
        return f"{name}: none measured"
    p95 = got[min(len(got) - 1, int(round(0.95 * (len(got) - 1))))]
    return (f"{name}: median {statistics.median(got):.1f} s, p95 {p95:.1f} s, "
            f"max {got[-1]:.1f} s over {len(got)} (goal {goal:.0f} s: max is "
            f"{got[-1] / goal:.2f} of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--verbose", action="store_true",
                        help="print each recovery's status changes")
    args = parser.parse_args()
    docker = ensure_dockerd()
    build_test_image(docker)
    server = RedisServer()
    server.start()
    prog = Path(tempfile.mkdtemp(prefix="fault-bench-"))
    (prog / "server.py").write_text(SERVER)
    (prog / "client.py").write_text(CLIENT)
    volumes = {**HOST_PROGRAM_MOUNTS, str(prog): {"bind": "/prog", "mode": "ro"}}
    env = dict(os.environ, REDIS_URL=server.url, PORTOLAN_HOST_ID=HOST_ID,
               PORTOLAN_VAR_DIR=str(prog / "var"),
               PORTOLAN_ANOMALY_HOST_LOAD_PER_CPU="1000")
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for argv in ([sys.executable, "-m", "collector"],
                          [sys.executable, "manage.py", "analyze"])]
    pairs: list[Pair] = []
    try:
        client = redis.Redis.from_url(server.url)
        if not wait_for(lambda: client.get(Keys().host(HOST_ID)), timeout=60):
            raise SystemExit("the collector never reported")
        label = {"portolan.bench": "fault_timing"}
        pairs = [Pair(docker, server.url, volumes, label) for _ in range(args.pairs)]
        if not all(p.settle() for p in pairs):
            raise SystemExit("the pairs never settled to ok")
        started = time.monotonic()

        def rounds(pair: Pair) -> None:
            for _ in range(args.rounds):
                pair.fault()

        threads = [threading.Thread(target=rounds, args=(p,)) for p in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        faults = args.pairs * args.rounds
        print(f"{faults} faults ({args.pairs} pairs x {args.rounds} rounds) in "
              f"{time.monotonic() - started:.0f} s; collector and analyzer at 1 s")
        print(figures("server node red after the kill",
                      [v for p in pairs for v in p.red], RED_GOAL))
        print(figures("client edge red after the kill",
                      [v for p in pairs for v in p.edge_red], RED_GOAL))
        print(figures("all ok after the start", [v for p in pairs for v in p.ok],
                      OK_GOAL))
        print(f"flaps: {sum(p.flaps for p in pairs)}; faults not seen red or "
              f"not back to ok in time: {sum(p.missed for p in pairs)}")
    finally:
        for p in pairs:
            p.remove()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        server.stop()


if __name__ == "__main__":
    main()
