"""Capture files: size per host-hour, and replay throughput into a real Redis.

    .venv/bin/python bench/capture_replay.py [--minutes 10] [--demo demo/demo.capture]

For the shipped demo capture and for a generated busy host (50 containers,
250 flows, bench/capture_world.py): the file's bytes per host-hour, how fast
it is read (decompressed and checked), and how fast one `manage.py replay
--fast` process writes it into a redis-server of its own (reports/s, flow
counters/s, and so how many hosts reporting every second one replay keeps up
with).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.capture_world import WorldSpec, generate  # noqa: E402
from collector.capture.format import CaptureReader, Report, capture_summary  # noqa: E402
from collector.capture.replayer import Replayer  # noqa: E402
from collector.reporter import redis_client  # noqa: E402
from collector.schema import Keys  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(name: str, path: Path, url: str) -> None:
    info = capture_summary(path)
    hosts = len(info["hosts"])
    reports = sum(info["reports_per_host"].values())
    interval = (info["last"] - info["first"]) / max(1, reports / hosts - 1)
    span_h = (info["last"] - info["first"] + interval) / 3600
    per_host_hour = info["bytes"] / hosts / span_h
    started = time.perf_counter()
    fields = sum(len(r.flows) + len(r.base) for r in CaptureReader(path).records()
                 if isinstance(r, Report))
    read_s = time.perf_counter() - started
    client = redis_client(url)
    client.flushall()
    replayer = Replayer(client, Keys("bench"), speed=None, keep_times=True)
    started = time.perf_counter()
    stats = replayer.replay([path])
    replay_s = time.perf_counter() - started
    assert not stats.errors, stats.errors
    print(f"{name}: {hosts} hosts, {reports} reports over "
          f"{span_h * 60:.1f} min ({interval:.2f} s apart), {info['bytes']:,} bytes")
    print(f"  size: {per_host_hour / 1e6:.2f} MB per host-hour")
    print(f"  read: {reports / read_s:,.0f} reports/s, {fields / read_s:,.0f} "
          "flow counters/s (decompress + check)")
    print(f"  replay: {stats.reports / replay_s:,.0f} reports/s, "
          f"{fields / replay_s:,.0f} flow counters/s -> one replay keeps up with "
          f"{stats.reports / replay_s * interval:,.0f} hosts reporting every "
          f"{interval:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo" / "demo.capture")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="portolan-bench-"))
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
         str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        time.sleep(0.5)
        if args.demo.exists():
            measure("demo capture", args.demo, url)
        busy = work / "busy.capture"
        generate(busy, WorldSpec(hosts=1, containers=50, services=10, edges=250,
                                 faults=2, duration=args.minutes * 60))
        measure("busy host (generated: 50 containers, 250 flows)", busy, url)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
