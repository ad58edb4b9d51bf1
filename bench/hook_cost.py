"""Where the collector's kernel time goes: BPF run time per program, per connection.

Loads the eBPF tracer, turns on the kernel's BPF run-time statistics
(kernel.bpf_stats_enabled), runs the connection workload of
bench/collector_overhead.py between two containers, and prints each program's
nanoseconds and runs per connection. What the kernel spends around each run
(building the tracepoint's record, calling into BPF) is not in these figures;
`perf record -a` during the workload shows it (trace_call_bpf, perf_trace_*).

--program takes several, measured in turn and round after round (--rounds), so
that they are compared under the same load: raw, tracepoint
(PORTOLAN_EBPF_PROGRAM), empty-raw (programs that only return, one per hook,
attached as the raw program attaches them: the floor of a run), and
raw@DIR / tracepoint@DIR (connections.c and its headers from DIR instead, e.g.
an older commit's, written out with `git archive`).

    .venv/bin/python bench/hook_cost.py [--seconds 5] [--program raw,empty-raw]
        [--rounds 1]

Needs root, eBPF, Docker and bpftool (Debian package bpftool).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector_overhead import run_load, start_server  # noqa: E402
from empty_hooks import attach_plan  # noqa: E402

from collector.ebpf import tracer as tracer_module  # noqa: E402
from collector.ebpf.support import available_hooks  # noqa: E402
from collector.ebpf.tracer import ConnectionTracer  # noqa: E402
from tests.conftest import build_test_image, ensure_dockerd  # noqa: E402

# The hooks the raw program puts raw (the state-change and route hooks, and
# the byte hooks it always attaches raw); the rest see no traffic here.
EMPTY_RAW_HOOKS = ("sock:inet_sock_set_state", "fib:fib_table_lookup",
                   "fib6:fib6_table_lookup", "sock:sock_send_length",
                   "sock:sock_recv_length")


def programs(ids: set[int]) -> dict[int, dict]:
    """bpftool's account of the programs ``ids`` (only ours: other processes on
    this machine may load programs of the same names)."""
    out = subprocess.check_output(["bpftool", "-j", "prog", "show"])
    return {p["id"]: p for p in json.loads(out) if p["id"] in ids}


def program_ids(bpf) -> set[int]:
    """The ids of the programs a bcc BPF object loaded (from their fds)."""
    ids = set()
    for fn in bpf.funcs.values():
        info = Path(f"/proc/self/fdinfo/{fn.fd}").read_text()
        ids.update(int(line.split()[1]) for line in info.splitlines()
                   if line.startswith("prog_id:"))
    return ids


class EmptyRaw:
    """One program that only returns per hook (so each has its own run
    statistics), attached raw."""

    def __init__(self):
        from bcc import BPF

        here = available_hooks()
        hooks = [h for h in EMPTY_RAW_HOOKS if here.get(h)]
        _, raw = attach_plan(hooks, raw_all=True)
        text = "".join(f"int raw_tracepoint__{tp.decode()}(void *ctx) {{ return 0; }}\n"
                       for tp, _ in raw)
        # bcc attaches each raw_tracepoint__<event> function as it loads.
        self._bpf = BPF(text=text.encode())

    def close(self) -> None:
        self._bpf.cleanup()


def load(spec: str):
    """The tracer (or empty programs) ``spec`` names, loaded and attached."""
    if spec == "empty-raw":
        return EmptyRaw()
    program, _, source = spec.partition("@")
    default = tracer_module.PROGRAM_PATH
    if source:
        tracer_module.PROGRAM_PATH = Path(source) / "connections.c"
    try:
        tracer = ConnectionTracer(program=program)
    finally:
        tracer_module.PROGRAM_PATH = default
    return tracer


def measure(client, ip: str, spec: str, seconds: float) -> dict[str, tuple]:
    """program name -> (ns per connection, runs per connection) for one load."""
    loaded = load(spec)
    try:
        ids = program_ids(loaded._bpf)
        time.sleep(1)
        before = programs(ids)
        load_container, result = run_load(client, ip, seconds, 0, 2)
        load_container.remove(force=True)
        after = programs(ids)
    finally:
        loaded.close()
    n = result["connections"]
    rows = {}
    for pid, prog in after.items():
        old = before.get(pid)
        if old is None or "run_time_ns" not in prog:
            continue
        runs = prog["run_cnt"] - old.get("run_cnt", 0)
        if runs:
            ns = prog["run_time_ns"] - old.get("run_time_ns", 0)
            rows[prog.get("name", "?")] = (ns / n, runs / n)
    print(f"{spec}: {n} connections at {n / result['seconds']:.0f} conn/s")
    for name, (ns, runs) in sorted(rows.items(), key=lambda r: -r[1][0]):
        print(f"  {ns:8.0f} ns/conn  {runs:5.1f} runs/conn  {name}")
    print(f"  {sum(r[0] for r in rows.values()):8.0f} ns/conn in all BPF programs",
          flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--program", default="auto",
                        help="comma-separated: auto, raw, tracepoint, empty-raw, "
                             "raw@DIR, tracepoint@DIR")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    specs = [s for s in args.program.split(",") if s]
    client = ensure_dockerd()
    build_test_image(client)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    server, ip = start_server(client)
    totals: dict[str, list[float]] = defaultdict(list)
    per_prog: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        for _ in range(args.rounds):
            for spec in specs:
                rows = measure(client, ip, spec, args.seconds)
                totals[spec].append(sum(r[0] for r in rows.values()))
                for name, (ns, _) in rows.items():
                    per_prog[spec, name].append(ns)
    finally:
        server.remove(force=True)
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], check=False)
    if args.rounds > 1:
        print("median over rounds, ns per connection:")
        for spec in specs:
            print(f"  {spec}: {statistics.median(totals[spec]):.0f} in all")
            for (s, name), values in sorted(per_prog.items()):
                if s == spec and statistics.median(values) >= 1:
                    print(f"    {statistics.median(values):8.0f}  {name}")


if __name__ == "__main__":
    main()
