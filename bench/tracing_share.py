"""Share of all CPU time spent tracing, from kernel profiles: collector on vs off.

Throughput on a small VM drifts by +-10 % between runs, more than the effect
bench/collector_overhead.py measures. This measures the cost directly: during
the same connection workload, `perf record -a` samples every CPU, and the
samples in tracing code (BPF programs, the tracepoint glue that calls them,
BPF map operations) are counted against all samples. The collector's own
process CPU is added from /proc. With the workload saturating the machine,
1 - (tracing share + collector share) bounds the throughput ratio from above:
the networking code itself also runs slower with the tracer on, which no
tracing symbol shows (bench/toggle_overhead.py --perf measures that).

    .venv/bin/python bench/tracing_share.py [--seconds 6] [--rounds 3]

Needs root, eBPF, Docker, redis-server and perf (Debian package linux-perf).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector_overhead import (  # noqa: E402
    COLLECTORS,
    Tracer,
    proc_cpu_seconds,
    run_load,
    start_workload_world,
)

# Kernel symbols that only run because something is tracing.
TRACING_SYMBOLS = re.compile(
    r"^(bpf_prog_\w+|trace_call_bpf|bpf_trace_run\d+|__bpf_trace_\w+|"
    r"perf_trace_\w+|perf_call_bpf_\w+|"
    r"perf_syscall_\w+|perf_swevent_\w+recursion\w*|htab_\w+|__htab_\w+|"
    r"bpf_lru_\w+|pcpu_freelist_\w+|bpf_get_current_\w+|bpf_ktime_get_ns|"
    r"bpf_map_\w+|call_trace_\w+)$"
)


def symbol_shares(report: str) -> dict[str, float]:
    """symbol -> % of samples, from `perf report --sort sym --stdio -g none`.

    >>> symbol_shares("     1.19%  [k] trace_call_bpf\\n# comment\\n")
    {'trace_call_bpf': 1.19}
    """
    shares = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[k.]\]\s+(\S+)", line)
        if m:
            shares[m.group(2)] = shares.get(m.group(2), 0.0) + float(m.group(1))
    return shares


def tracing_share(shares: dict[str, float]) -> float:
    """% of all samples in tracing code.

    >>> tracing_share({"trace_call_bpf": 1.0, "tcp_ack": 5.0, "htab_map_hash": 0.5})
    1.5
    """
    return sum(v for k, v in shares.items() if TRACING_SYMBOLS.match(k))


def top_tracing_symbols(shares: dict[str, float], n: int) -> list[tuple[str, float]]:
    """The n tracing symbols with the most samples, most first.

    >>> shares = {"htab_map_hash": 0.5, "tcp_ack": 5.0, "trace_call_bpf": 1.0}
    >>> top_tracing_symbols(shares, 1)
    [('trace_call_bpf', 1.0)]
    """
    tracing = [(k, v) for k, v in shares.items() if TRACING_SYMBOLS.match(k)]
    return sorted(tracing, key=lambda kv: -kv[1])[:n]


def profile(docker_client, server_ip: str, seconds: float, out: Path,
            tracer_pid: int | None = None) -> float:
    """perf-record every CPU during a load run; returns the tracer process's
    CPU over the recorded seconds, in % of the whole machine (like the profile
    shares). Measured over the same window as the profile, so that the
    tracer's one-off work as the client container starts and goes (inspecting
    it, its cgroup appearing) is not charged to the steady top rate."""
    result = {}
    load = threading.Thread(
        target=lambda: result.update(
            run=run_load(docker_client, server_ip, seconds + 4, 0, 2)
        )
    )
    load.start()
    time.sleep(2)  # past the client's start
    cpu0 = proc_cpu_seconds(tracer_pid) if tracer_pid else 0.0
    t0 = time.monotonic()
    subprocess.run(
        ["perf", "record", "-a", "-e", "cpu-clock", "-F", "1999", "-o", str(out),
         "--", "sleep", str(seconds)],
        capture_output=True, check=True,
    )
    used = proc_cpu_seconds(tracer_pid) - cpu0 if tracer_pid else 0.0
    elapsed = time.monotonic() - t0
    load.join()
    container, _counts = result["run"]
    container.remove(force=True)
    return 100 * used / elapsed / os.cpu_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-udp", action="store_true",
                        help="also profile the collector with PORTOLAN_TRACE_UDP=0")
    parser.add_argument("--empty-hooks", action="store_true",
                        help="also profile bench/empty_hooks.py: the same hooks "
                             "with programs that do nothing (the hooks' floor)")
    parser.add_argument("--symbols", type=int, default=0, metavar="N",
                        help="print the N costliest tracing symbols of each traced run")
    args = parser.parse_args()
    if not shutil.which("perf"):
        sys.exit("perf is not installed (Debian package linux-perf)")

    docker_client, redis_server, server, server_ip = start_workload_world()
    configs = ["off", "portolan", *(["portolan-no-udp"] if args.no_udp else []),
               *(["empty-hooks"] if args.empty_hooks else [])]
    shares = {name: [] for name in configs}
    collector_cpu = {name: [] for name in configs if name in COLLECTORS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(args.rounds):
                for name in configs:
                    tracer = Tracer(name, redis_server.url)
                    tracer.start()
                    data = Path(tmp, f"{name}-{rnd}.data")
                    try:
                        cpu = profile(docker_client, server_ip, args.seconds, data,
                                      tracer.proc.pid if tracer.proc else None)
                        if name in COLLECTORS:
                            collector_cpu[name].append(cpu)
                    finally:
                        tracer.stop()
                    report = subprocess.run(
                        ["perf", "report", "-i", str(data), "--no-children",
                         "--sort", "sym", "--stdio", "-g", "none"],
                        capture_output=True, text=True, check=True,
                    ).stdout
                    by_symbol = symbol_shares(report)
                    share = tracing_share(by_symbol)
                    shares[name].append(share)
                    print(f"round {rnd + 1} {name:<9} tracing {share:5.2f}% of all "
                          "CPU samples", flush=True)
                    if args.symbols and name in COLLECTORS:
                        for sym, pct in top_tracing_symbols(by_symbol, args.symbols):
                            print(f"    {pct:5.2f}%  {sym}")
        off = statistics.median(shares["off"])
        print(f"\ntracing code, % of all CPU samples (median): off {off:.2f}%")
        for name, cpu in collector_cpu.items():
            on = statistics.median(shares[name]) - off
            own = statistics.median(cpu)
            print(f"{name}: tracing +{on:.2f}%, collector process {own:.2f}% of "
                  f"the machine; throughput ratio if only these cost (an upper "
                  f"bound): {1 - (on + own) / 100:.3f}")
        if "empty-hooks" in shares:
            floor = statistics.median(shares["empty-hooks"]) - off
            work = statistics.median(shares["portolan"]) - off - floor
            print(f"the same hooks with empty programs: +{floor:.2f}% "
                  f"(portolan's own BPF work: +{work:.2f}%)")
    finally:
        server.remove(force=True)
        redis_server.stop()


if __name__ == "__main__":
    main()
