"""Collector overhead: connection throughput with the collector on vs off.

A client container opens short TCP connections to a server container as fast
as the machine goes, alternately with nothing tracing, with Portolan's
collector (`python -m collector`, eBPF, reporting to a real Redis), and with
bcc's per-event tracers tcplife and tcpstates as peers. Prints throughput and
its ratio to "off", each tracer's CPU (% of one core) and RSS, and whether the
collector's edge count equals the connections the client made. Then a run at
a fixed 1,000 connections/s for the collector's CPU there.

Throughput on a small VM drifts by +-10 % from one run to the next, more than
the effect measured. So each round pairs a traced run with an untraced run
beside it (alternating which goes first), the ratio is taken per round, and
the median over many short rounds is reported with its quartiles.

    .venv/bin/python bench/collector_overhead.py [--seconds 5] [--rounds 10]

Needs root, eBPF, Docker (started if not running) and redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from collector.flow_fields import HostFlowFields  # noqa: E402
from collector.schema import Keys, container_node_id  # noqa: E402
from tests.conftest import (  # noqa: E402
    HOST_PROGRAM_MOUNTS,
    TEST_IMAGE,
    RedisServer,
    build_test_image,
    ensure_dockerd,
    wait_for,
)

PORT = 9000
HOST_ID = "bench-host"
# The host's python and this directory, for bench/conn_workload.py.
WORKLOAD_MOUNTS = {**HOST_PROGRAM_MOUNTS,
                   str(ROOT / "bench"): {"bind": "/bench", "mode": "ro"}}
# The collector's configurations: name -> PORTOLAN_TRACE_UDP.
COLLECTORS = {"portolan": "1", "portolan-no-udp": "0"}
PEERS = {
    "tcplife": ["tcplife-bpfcc", "/usr/sbin/tcplife-bpfcc"],
    "tcpstates": ["tcpstates-bpfcc", "/usr/sbin/tcpstates-bpfcc"],
}


def proc_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Tracer:
    """One tracing configuration: started before a load run, stopped after."""

    def __init__(self, name: str, redis_url: str):
        self.name = name
        self.redis_url = redis_url
        self.proc = None

    def start(self) -> None:
        if self.name == "off":
            return
        if self.name in COLLECTORS:
            env = dict(os.environ, REDIS_URL=self.redis_url, PORTOLAN_HOST_ID=HOST_ID,
                       PORTOLAN_VAR_DIR="/tmp/portolan-bench",
                       PORTOLAN_TRACE_UDP=COLLECTORS[self.name])
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            client = redis.Redis.from_url(self.redis_url)
            client.delete(Keys().collectors)
            if not wait_for(lambda: client.zscore(Keys().collectors, HOST_ID), 60):
                raise RuntimeError("the collector did not report")
        else:
            if self.name == "empty-hooks":
                command = [sys.executable, str(ROOT / "bench" / "empty_hooks.py")]
            else:
                command = [next(t for t in PEERS[self.name] if shutil.which(t))]
            self.proc = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(6)  # bcc compiles and attaches
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at start ({self.proc.returncode})")
        self.cpu0 = proc_cpu_seconds(self.proc.pid)
        self.t0 = time.monotonic()

    def sample(self) -> tuple[float, float]:
        """CPU % of one core since start, and RSS in MB."""
        if self.proc is None:
            return 0.0, 0.0
        cpu = proc_cpu_seconds(self.proc.pid) - self.cpu0
        return 100 * cpu / (time.monotonic() - self.t0), proc_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartile (the median's spread over rounds)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def start_server(docker_client, pin: bool = False):
    """The workload's server container and its IP address."""
    server = docker_client.containers.run(
        TEST_IMAGE, ["/usr/bin/python3", "/bench/conn_workload.py", "server",
                     str(PORT)],
        detach=True, labels={"portolan.test": "1"},
        **({"cpuset_cpus": "1"} if pin else {}),
        volumes=WORKLOAD_MOUNTS,
    )
    server.reload()
    networks = server.attrs["NetworkSettings"]["Networks"]
    return server, next(iter(networks.values()))["IPAddress"]


def start_workload_world(pin: bool = False):
    """Docker (started if need be), the test image, a Redis and the workload's
    server: (Docker client, Redis server, server container, its IP)."""
    docker_client = ensure_dockerd()
    if docker_client is None:
        sys.exit("no Docker engine")
    build_test_image(docker_client)
    redis_server = RedisServer()
    redis_server.start()
    server, server_ip = start_server(docker_client, pin=pin)
    return docker_client, redis_server, server, server_ip


def run_load(docker_client, server_ip: str, seconds: float, rate: float,
             concurrency: int, pin: bool = False, tick: float = 0.0):
    """Run the client container to its end: (container, its JSON result)."""
    c = docker_client.containers.run(
        TEST_IMAGE,
        ["/usr/bin/python3", "/bench/conn_workload.py", "client", server_ip,
         str(PORT), str(seconds), str(rate), str(concurrency), str(tick)],
        detach=True, labels={"portolan.test": "1"},
        **({"cpuset_cpus": "0"} if pin else {}),
        volumes=WORKLOAD_MOUNTS,
    )
    c.wait(timeout=seconds + 120)
    out = c.logs(stdout=True, stderr=False).decode().strip().splitlines()
    c.reload()
    return c, json.loads(out[-1])


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:4.1f}%" if whole else "  n/a"


def median_and_spread(ratios: list[float], width: int = 6) -> str:
    """"median quartile-quartile" columns; "1.000" for the baseline itself."""
    if not ratios:
        return f"{'1.000':>{width}} {'':>13}"
    q = quartiles(ratios)
    return (f"{statistics.median(ratios):>{width}.3f} "
            f"{f'{q[0]:.3f}-{q[1]:.3f}':>13}")


def counted_connections(client, container_id: str, server_ip: str) -> int:
    node = container_node_id(HOST_ID, container_id)
    total = 0
    fields = HostFlowFields(HOST_ID, [c.decode() for c in client.hkeys(
        Keys().containers(HOST_ID))], client.hgetall(Keys().ids(HOST_ID)))
    for field, value in client.hgetall(Keys().flows(HOST_ID)).items():
        key, counter = fields.parse(field.decode())
        if (counter == "connections" and key.node == node and key.ip == server_ip
                and key.port == PORT):
            total += int(value)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--collectors", default="portolan,portolan-no-udp",
                        help=f"of {', '.join(COLLECTORS)}")
    parser.add_argument("--peers", default="tcplife,tcpstates")
    parser.add_argument("--peer-rounds", type=int, default=3,
                        help="rounds that also measure the peers (the first N)")
    parser.add_argument("--pin", action="store_true",
                        help="client on CPU 0, server on CPU 1 (docker cpusets)")
    args = parser.parse_args()

    docker_client, server, srv, server_ip = start_workload_world(args.pin)
    rclient = redis.Redis.from_url(server.url)
    peers = [p for p in args.peers.split(",") if p]
    collectors = [c for c in args.collectors.split(",") if c]
    if not collectors or set(collectors) - set(COLLECTORS):
        sys.exit(f"--collectors: some of {', '.join(COLLECTORS)}")
    results = {c: {"rate": [], "ratio": [], "cpu": [], "rss": [], "lost": [],
                   "work": [], "work_ratio": []}
               for c in ["off", *collectors, *peers]}
    clients = []

    def measure(name: str, rnd: int) -> tuple[float, float]:
        """One load run under one configuration; returns connections/s and the
        machine's CPU time per connection (µs, tracer and all)."""
        tracer = Tracer(name, server.url)
        tracer.start()
        try:
            c, load = run_load(docker_client, server_ip, args.seconds, 0,
                               args.concurrency, pin=args.pin)
            clients.append(c)
            cpu, rss = tracer.sample()
            if name in COLLECTORS:
                time.sleep(2.5)  # two intervals for the last counts
        finally:
            tracer.stop()
        rate = load["connections"] / load["seconds"]
        work = 1e6 * load["cpu_busy_s"] / max(1, load["connections"])
        machine = load["cpu_busy_s"] + load["cpu_idle_s"] + load["cpu_steal_s"]
        res = results[name]
        res["rate"].append(rate)
        res["work"].append(work)
        res["cpu"].append(cpu)
        res["rss"].append(rss)
        counted = None
        if name in COLLECTORS:
            counted = counted_connections(rclient, c.id, server_ip)
            res["lost"].append(load["connections"] - counted)
        print(f"round {rnd + 1:>2} {name:<16} {rate:8.0f} conn/s  "
              f"{work:5.0f} µs CPU/conn (idle {pct(load['cpu_idle_s'], machine)}, "
              f"steal {pct(load['cpu_steal_s'], machine)})  "
              f"tracer CPU {cpu:5.1f}%  RSS {rss:6.1f} MB"
              + (f"  made {load['connections']} counted {counted}"
                 if counted is not None else ""), flush=True)
        return rate, work

    try:
        time.sleep(1)
        # Each round pairs a traced run with an untraced one right beside it,
        # and alternates which goes first: the machine's drift over minutes
        # (and any first/second position effect) cancels in the round's ratio.
        for rnd in range(args.rounds):
            traced = collectors + [p for p in peers if rnd < args.peer_rounds]
            for name in traced:
                order = ["off", name] if rnd % 2 == 0 else [name, "off"]
                runs = {n: measure(n, rnd) for n in order}
                results[name]["ratio"].append(runs[name][0] / runs["off"][0])
                results[name]["work_ratio"].append(runs["off"][1] / runs[name][1])

        print("\ntop rate (connections as fast as they go); ratio = median over "
              "rounds of traced / untraced in the same round.\n"
              "work ratio = the same from the machine's CPU time per connection "
              "(untraced / traced): the throughput ratio\nwhen CPU-bound, "
              "without the run-to-run drift in how much CPU the VM gets.")
        print(f"{'config':<16} {'rounds':>6} {'conn/s':>8} {'ratio':>6} "
              f"{'ratio IQR':>13} {'µs/conn':>8} {'work ratio':>10} "
              f"{'work IQR':>13} {'CPU%':>6} {'RSS MB':>7}")
        for name, r in results.items():
            if not r["rate"]:
                continue
            print(f"{name:<16} {len(r['rate']):>6} "
                  f"{statistics.median(r['rate']):8.0f} "
                  f"{median_and_spread(r['ratio'])} "
                  f"{statistics.median(r['work']):8.0f} "
                  f"{median_and_spread(r['work_ratio'], 10)} "
                  f"{statistics.median(r['cpu']):6.1f} "
                  f"{statistics.median(r['rss']):7.1f}")
        for name in collectors:
            print(f"{name} lost counts per run: {results[name]['lost']} (goal: all 0)")

        tracer = Tracer(collectors[0], server.url)
        tracer.start()
        try:
            c, load = run_load(docker_client, server_ip, args.seconds, 1000, 1,
                               pin=args.pin)
            clients.append(c)
            cpu, rss = tracer.sample()
            time.sleep(2.5)
        finally:
            tracer.stop()
        counted = counted_connections(rclient, c.id, server_ip)
        rate = load["connections"] / load["seconds"]
        print(f"\nat {rate:.0f} conn/s: {collectors[0]} "
              f"CPU {cpu:.1f}% of one core (goal < 5%), RSS {rss:.1f} MB, "
              f"made {load['connections']} counted {counted}")
    finally:
        for c in [srv, *clients]:
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001, S110 - cleanup
                pass
        server.stop()


if __name__ == "__main__":
    main()
