"""Benchmark: one metrics pass (cgroup metrics + net dev) over N idle containers.

Starts ``--containers`` busybox containers running ``sleep 3600`` (removed at
the end, even on Ctrl-C), then:

1. times ``--passes`` back-to-back passes: CPU time (``time.process_time``)
   and wall time per pass;
2. runs one pass per ``--interval`` seconds for ``--minutes`` minutes, as the
   collector would, and samples RSS to show whether it stays flat.

Goal (issue 4): under 100 ms of CPU per pass over 200 containers, flat RSS.

    .venv/bin/python bench/metrics_pass.py                 # 200 containers, 1 min
    .venv/bin/python bench/metrics_pass.py --minutes 10
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.cgroup_metrics import CgroupMetricsReader  # noqa: E402
from collector.netns_metrics import read_net_dev  # noqa: E402
from tests.conftest import build_test_image, ensure_dockerd  # noqa: E402

GOAL_CPU_MS = 100.0
LABEL = "portolan.bench"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_containers(client, image: str, count: int) -> list[tuple[str, int]]:
    """Start ``count`` idle containers; return (id, init pid) pairs."""

    def start(i: int) -> tuple[str, int]:
        c = client.containers.run(
            image,
            ["sleep", "3600"],
            detach=True,
            name=f"portolan-bench-{i}",
            labels={LABEL: "1"},
            stop_signal="SIGKILL",
        )
        c.reload()
        return c.id, c.attrs["State"]["Pid"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(count)))


def remove_containers(client) -> None:
    leftovers = client.containers.list(all=True, filters={"label": LABEL})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: c.remove(force=True), leftovers))


def one_pass(reader: CgroupMetricsReader, targets: list[tuple[str, int]]) -> int:
    """Read every container's cgroup metrics and interfaces; return how many read."""
    ok = 0
    for cid, pid in targets:
        metrics = reader.read(cid, pid)
        interfaces = read_net_dev(pid)
        if metrics is not None and interfaces is not None:
            ok += 1
    return ok


def timed(reader, targets) -> tuple[float, float, int]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok = one_pass(reader, targets)
    return (time.process_time() - cpu0) * 1e3, (time.perf_counter() - wall0) * 1e3, ok


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label}: mean {statistics.fmean(values):.1f} ms, median "
        f"{statistics.median(values):.1f} ms, max {max(values):.1f} ms"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument(
        "--minutes",
        type=float,
        default=1.0,
        help="length of the RSS-flatness run (one pass per interval)",
    )
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    # A TERM (e.g. a timeout) still removes the 200 containers on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    client = ensure_dockerd()
    if client is None:
        print("no Docker engine", file=sys.stderr)
        return 2
    image = build_test_image(client)
    remove_containers(client)
    rss_start = rss_kib()
    try:
        t0 = time.perf_counter()
        targets = start_containers(client, image, args.containers)
        print(f"started {len(targets)} containers in {time.perf_counter() - t0:.1f} s")

        reader = CgroupMetricsReader()
        print(f"cgroup v{reader.version} at {reader.root}")
        first_cpu, first_wall, ok = timed(reader, targets)
        print(
            f"first pass (locates cgroups): {first_cpu:.1f} ms CPU, "
            f"{first_wall:.1f} ms wall, {ok}/{len(targets)} read"
        )

        cpu, wall = [], []
        for _ in range(args.passes):
            c, w, ok = timed(reader, targets)
            cpu.append(c)
            wall.append(w)
        rss_warm = rss_kib()
        print(f"{args.passes} passes over {len(targets)} containers ({ok} read):")
        print("  " + summary("CPU per pass ", cpu))
        print("  " + summary("wall per pass", wall))
        per_container_us = statistics.fmean(cpu) * 1e3 / max(1, len(targets))
        print(f"  CPU per container: {per_container_us:.0f} us")
        print(
            f"  ratio to the {GOAL_CPU_MS:.0f} ms goal: "
            f"{statistics.fmean(cpu) / GOAL_CPU_MS:.2f} "
            f"({'met' if statistics.fmean(cpu) < GOAL_CPU_MS else 'NOT met'})"
        )

        end = time.monotonic() + args.minutes * 60
        samples = [rss_warm]
        next_tick = time.monotonic()
        long_cpu = []
        while time.monotonic() < end:
            c, _w, _ok = timed(reader, targets)
            long_cpu.append(c)
            samples.append(rss_kib())
            next_tick += args.interval
            time.sleep(max(0.0, next_tick - time.monotonic()))
        rss_end = rss_kib()
        print(
            f"RSS-flatness run: {len(long_cpu)} passes over {args.minutes:g} min, "
            + summary("CPU per pass", long_cpu)
        )
        print(
            f"RSS: start {rss_start} KiB, after {args.passes} passes {rss_warm} "
            f"KiB, after the {args.minutes:g} min run {rss_end} KiB "
            f"(min {min(samples)}, max {max(samples)}; growth since warm "
            f"{rss_end - rss_warm:+d} KiB)"
        )
    finally:
        t0 = time.perf_counter()
        remove_containers(client)
        print(f"removed the containers in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
