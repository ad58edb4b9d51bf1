"""Where the collector's kernel time goes: BPF run time per program, per connection.

Loads the eBPF tracer, turns on the kernel's BPF run-time statistics
(kernel.bpf_stats_enabled), runs the connection workload of
bench/collector_overhead.py between two containers, and prints each program's
nanoseconds and runs per connection. What the kernel spends around each run
(building the tracepoint's record, calling into BPF) is not in these figures;
`perf record -a` during the workload shows it (trace_call_bpf, perf_trace_*).

    .venv/bin/python bench/hook_cost.py [--seconds 5]

Needs root, eBPF, Docker and bpftool (Debian package bpftool).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector_overhead import run_load, start_server  # noqa: E402

from collector.ebpf.tracer import ConnectionTracer  # noqa: E402
from tests.conftest import build_test_image, ensure_dockerd  # noqa: E402


def programs() -> dict[int, dict]:
    out = subprocess.check_output(["bpftool", "-j", "prog", "show"])
    return {p["id"]: p for p in json.loads(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    client = ensure_dockerd()
    build_test_image(client)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    tracer = ConnectionTracer()
    server, ip = start_server(client)
    try:
        time.sleep(1)
        before = programs()
        load_container, load = run_load(client, ip, args.seconds, 0, 2)
        load_container.remove(force=True)
        after = programs()
        n = load["connections"]
        rows = []
        for pid, prog in after.items():
            old = before.get(pid)
            if old is None or "run_time_ns" not in prog:
                continue
            runs = prog["run_cnt"] - old.get("run_cnt", 0)
            if runs:
                ns = prog["run_time_ns"] - old.get("run_time_ns", 0)
                rows.append((ns / n, runs / n, prog.get("name", "?")))
        print(f"{n} connections at {n / load['seconds']:.0f} conn/s")
        for ns, runs, name in sorted(rows, reverse=True):
            print(f"{ns:8.0f} ns/conn  {runs:5.1f} runs/conn  {name}")
        print(f"{sum(r[0] for r in rows):8.0f} ns/conn in all BPF programs")
    finally:
        server.remove(force=True)
        tracer.close()
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], check=False)


if __name__ == "__main__":
    main()
