"""Collector overhead with the tracer switched on and off every few seconds.

bench/collector_overhead.py compares separate 5 s runs, and this VM's speed
drifts by +-15 % between them: more than the 3 % in question. Here one client
runs for the whole measurement while the collector's BPF programs are
attached for PHASE seconds and detached for the next PHASE seconds, over and
over; during "on" phases the collector steps once a second, reporting to a
real Redis, as it does when installed. The client records its count every
0.1 s, so each phase's rate is read from the same run. Each "on" phase is
compared with the mean of the "off" phases on either side of it, which
cancels drift slower than a few seconds.

Detached, a tracepoint costs nothing (its static key is off), so "off" is the
machine without Portolan; the collector's process stays, idle. Controls:
--steps-only (the steps, no programs) and --empty (programs that only return).
--perf N also profiles every CPU and prints the N symbols whose CPU time per
connection grew most with the tracer on, tracing code or not.

--compare puts several configurations side by side in the same run: off, the
first, off, the second..., round and round; each configuration's "on" phases
are compared with the "off" phases beside them. Configurations: raw (the
collector with the raw hooks, PORTOLAN_EBPF_PROGRAM=raw), tracepoint (with the
tracepoint program), empty-raw (programs that only return, on the hooks the
raw program uses, attached as it attaches them: the new floor) and
empty-tracepoint (the same as the tracepoint program attaches them).
raw@DIR / tracepoint@DIR load connections.c and its headers from DIR instead
(e.g. an older commit's, written out with `git archive`): before and after a
change in one run.

    .venv/bin/python bench/toggle_overhead.py [--seconds 120] [--phase 2]
        [--no-udp] [--steps-only | --empty | --compare [CONFIGS]] [--perf N]

Needs root, eBPF, Docker (started if not running) and redis-server; --perf
needs perf (Debian package linux-perf).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from collector_overhead import quartiles, run_load, start_workload_world  # noqa: E402

from collector.reporter import HistoryPolicy  # noqa: E402
from collector.runner import build_collector  # noqa: E402

TICK = 0.1  # the client's count is recorded this often (seconds)
SETTLE = 0.2  # seconds after a switch left out of a phase's window


class Hooks:
    """Programs to attach and detach as one: (tracepoint, function) pairs of
    a bcc BPF object, regular and raw."""

    def __init__(self, bpf, regular=(), raw=()):
        self.bpf = bpf
        self.regular = list(regular)
        self.raw = list(raw)

    @classmethod
    def attached(cls, bpf) -> Hooks:
        """Every program bcc attached when it loaded (its naming convention)."""
        return cls(
            bpf,
            [(tp, b"tracepoint__" + tp.replace(b":", b"__"))
             for tp in bpf.tracepoint_fds],
            [(tp, b"raw_tracepoint__" + tp) for tp in bpf.raw_tracepoint_fds],
        )

    def detach(self) -> None:
        for tp, _fn in self.regular:
            self.bpf.detach_tracepoint(tp)
        for tp, _fn in self.raw:
            self.bpf.detach_raw_tracepoint(tp)

    def attach(self) -> None:
        for tp, fn in self.regular:
            self.bpf.attach_tracepoint(tp=tp, fn_name=fn)
        for tp, fn in self.raw:
            self.bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)


def empty_hooks(trace_udp: bool, program: str = "tracepoint") -> Hooks:
    """Programs that only return, on the collector's hooks, attached as its
    ``program`` ("raw" or "tracepoint") attaches them (see
    bench/empty_hooks.py); not attached yet."""
    from bcc import BPF
    from empty_hooks import EMPTY_PROGRAM, attach_plan

    from collector.ebpf.kernel_fields import HOOK_FIELDS
    from collector.ebpf.support import OPTIONAL_HOOKS, REQUIRED_HOOKS, available_hooks
    from collector.ebpf.tracer import ROUTE_HOOKS

    here = available_hooks()
    wanted = [h for h in [*REQUIRED_HOOKS, *OPTIONAL_HOOKS] if here.get(h)
              and (trace_udp or h not in ROUTE_HOOKS)]
    regular, raw = attach_plan(wanted)
    if program == "raw":  # the raw program's own raw hooks too
        regular = [(tp, fn) for tp, fn in regular if tp.decode() not in HOOK_FIELDS]
        raw += [(h.split(":")[1].encode(), b"empty_raw") for h in wanted
                if h in HOOK_FIELDS]
    return Hooks(BPF(text=EMPTY_PROGRAM), regular, raw)


def samples_by_phase(perf_script: str, phases: list[dict]) -> dict[bool, Counter]:
    """Symbol -> samples, summed over the on and over the off phases' windows,
    from `perf script -F time,sym` output on the monotonic clock.

    >>> out = "  10.5:  ffff tcp_ack\\n  12.5:  ffff bpf_prog_x\\n"
    >>> samples_by_phase(out, [{"on": False, "start": 10, "end": 11},
    ...                        {"on": True, "start": 12, "end": 13}])
    {True: Counter({'bpf_prog_x': 1}), False: Counter({'tcp_ack': 1})}
    """
    starts = [p["start"] for p in phases]
    found: dict[bool, Counter] = {True: Counter(), False: Counter()}
    for line in perf_script.splitlines():
        m = re.match(r"\s*([\d.]+):\s+\S+\s+(\S+)", line)
        if not m:
            continue
        t = float(m.group(1))
        i = bisect_right(starts, t) - 1
        if i >= 0 and t <= phases[i]["end"]:
            found[phases[i]["on"]][m.group(2).split("+")[0]] += 1
    return found


def print_symbol_costs(found: dict[bool, Counter], connections: dict[bool, int],
                       hz: int, n: int) -> None:
    """The symbols whose CPU time per connection grew most with the tracer
    on: where its cost goes, counted in the tracer's code or not."""
    per = {on: {sym: count / hz / max(1, connections[on]) * 1e9
                for sym, count in found[on].items()} for on in (True, False)}
    total = {on: sum(per[on].values()) for on in (True, False)}
    print(f"\nCPU per connection (all CPUs): on {total[True]:.0f} ns, off "
          f"{total[False]:.0f} ns (+{total[True] - total[False]:.0f} ns); "
          f"the {n} symbols that grew most (ns per connection, on - off):")
    growth = {sym: per[True].get(sym, 0.0) - per[False].get(sym, 0.0)
              for sym in set(per[True]) | set(per[False])}
    for sym, grew in sorted(growth.items(), key=lambda kv: -kv[1])[:n]:
        print(f"  {grew:+8.0f}  {sym}")


def count_at(ticks: list[list[float]], t: float) -> int:
    """A process's completed connections at time t (its last record <= t).

    >>> count_at([[0.0, 0], [0.1, 5], [0.2, 9]], 0.15)
    5
    """
    i = bisect_right([tick[0] for tick in ticks], t) - 1
    return ticks[max(i, 0)][1]


def connections_between(per_process: list[list[list[float]]],
                        a: float, b: float) -> int:
    """Connections all client processes completed between times a and b.

    >>> connections_between([[[0, 0], [1, 10], [2, 30]], [[0, 0], [2, 8]]], 1, 2)
    28
    """
    return sum(count_at(ticks, b) - count_at(ticks, a) for ticks in per_process)


def neighbour_ratios(phases: list[dict], config: str | None = None) -> list[float]:
    """Each "on" phase's rate (of ``config`` only, if given) over the mean rate
    of the "off" phases beside it.

    >>> neighbour_ratios([{"on": False, "rate": 100}, {"on": True, "rate": 95},
    ...                   {"on": False, "rate": 110}])
    [0.9047619047619048]
    """
    ratios = []
    for i, phase in enumerate(phases):
        if config is not None and phase.get("config") != config:
            continue
        if phase["on"] and 0 < i < len(phases) - 1:
            before, after = phases[i - 1], phases[i + 1]
            if not before["on"] and not after["on"]:
                ratios.append(phase["rate"] / ((before["rate"] + after["rate"]) / 2))
    return ratios


COMPARE_CONFIGS = ("raw", "tracepoint", "empty-raw", "empty-tracepoint")
COMPARE_DEFAULT = ("raw", "tracepoint", "empty-raw")


@contextlib.contextmanager
def program_from(source: str):
    """The tracer loads connections.c from directory ``source`` meanwhile (its
    own if empty)."""
    from collector.ebpf import tracer

    default = tracer.PROGRAM_PATH
    if source:
        tracer.PROGRAM_PATH = Path(source) / "connections.c"
    try:
        yield
    finally:
        tracer.PROGRAM_PATH = default


def compare(args, configs: list[str]) -> None:
    """Off, then each configuration in turn, off between each: one run."""
    docker_client, redis_server, server, server_ip = start_workload_world()
    collectors, hooks = {}, {}
    result: dict = {}
    phases: list[dict] = []
    step_cpu: dict[str, list[float]] = {c: [] for c in configs}
    try:
        for config in configs:
            program, _, source = config.removeprefix("empty-").partition("@")
            if config.startswith("empty-"):
                hooks[config] = empty_hooks(not args.no_udp, program)
                continue
            started = time.monotonic()
            with program_from(source):
                collector = build_collector(
                    redis_url=redis_server.url, prefix="portolan",
                    host_id=f"bench-{program}-{len(collectors)}", node_ttl=30,
                    flow_ttl=300, history=HistoryPolicy(),
                    trace_udp=not args.no_udp, ebpf_program=program)
            if collector.tracer.mode != "ebpf":
                sys.exit(f"the eBPF tracer did not load: {collector.host.mode_reason}")
            print(f"{config}: loaded in {time.monotonic() - started:.1f} s "
                  f"({collector.tracer.program} program)", flush=True)
            collectors[config] = collector
            hooks[config] = Hooks.attached(collector.tracer._bpf)
            hooks[config].detach()
        load = threading.Thread(target=lambda: result.update(
            run=run_load(docker_client, server_ip, args.seconds + 6, 0,
                         args.concurrency, tick=TICK)))
        load.start()
        time.sleep(3)  # the client container starts
        for collector in collectors.values():
            collector.step()
        end = time.monotonic() + args.seconds
        turn = 0
        while time.monotonic() < end:
            for config in (None, configs[turn % len(configs)]):
                if config is not None:
                    hooks[config].attach()
                start = time.monotonic()
                collector = collectors.get(config)
                if collector is not None:
                    for k in (1, 2):
                        time.sleep(max(0.0, start + k * args.phase / 2
                                       - time.monotonic()))
                        t = time.thread_time()
                        collector.step()
                        step_cpu[config].append(time.thread_time() - t)
                else:
                    time.sleep(args.phase)
                phases.append({"on": config is not None, "config": config or "off",
                               "start": start + SETTLE, "end": time.monotonic()})
                if config is not None:
                    hooks[config].detach()
            turn += 1
        load.join()
    finally:
        for collector in collectors.values():
            collector.tracer.close()
            collector.watcher.close()
        server.remove(force=True)
        redis_server.stop()
    client, counts = result["run"]
    client.remove(force=True)
    for phase in phases:
        n = connections_between(counts["ticks"], phase["start"], phase["end"])
        phase["rate"] = n / (phase["end"] - phase["start"])
    off_rates = [p["rate"] for p in phases if not p["on"]]
    print(f"{len(phases)} phases of {args.phase:g} s over {args.seconds:g} s"
          + (", PORTOLAN_TRACE_UDP=0" if args.no_udp else "")
          + f"; off: median {statistics.median(off_rates):.0f} conn/s")
    print(f"{'configuration':<18} {'phases':>6} {'ratio median':>12} "
          f"{'quartiles':>13} {'pooled':>7} {'lost':>5} {'step CPU':>9}")
    for config in configs:
        ratios = neighbour_ratios(phases, config)
        rates = [p["rate"] for p in phases if p["config"] == config]
        if not ratios:
            print(f"{config:<18} {0:>6} (too short for a phase between two offs)")
            continue
        q1, q3 = quartiles(ratios)
        collector = collectors.get(config)
        lost = str(collector.lost_total) if collector else "-"
        cpu = (f"{1000 * statistics.median(step_cpu[config]):.1f} ms"
               if step_cpu[config] else "-")
        print(f"{config:<18} {len(ratios):>6} {statistics.median(ratios):>12.3f} "
              f"{f'{q1:.3f}-{q3:.3f}':>13} "
              f"{statistics.fmean(rates) / statistics.fmean(off_rates):>7.3f} "
              f"{lost:>5} {cpu:>9}")
    print("ratio: an on phase's rate over the mean of the off phases beside it "
          "(goal >= 0.97); pooled: mean on rate over mean off rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--phase", type=float, default=2.0,
                        help="seconds on, then as many off")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--no-udp", action="store_true",
                        help="the collector with PORTOLAN_TRACE_UDP=0")
    parser.add_argument("--perf", type=int, default=0, metavar="N",
                        help="also profile every CPU (perf record) and print the "
                             "N symbols whose CPU per connection grew most")
    parser.add_argument("--sock-slots", type=int, default=0,
                        help="the TCP socket table's size (default: the tracer's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--steps-only", action="store_true",
                      help="the collector's programs stay detached; \"on\" "
                           "phases only run its steps (its userspace cost)")
    mode.add_argument("--empty", action="store_true",
                      help="programs that only return, on the same hooks, and "
                           "no steps (the floor: the cost of the hits)")
    mode.add_argument("--compare", nargs="?", const=",".join(COMPARE_DEFAULT),
                      metavar="CONFIGS",
                      help="configurations side by side in one run, comma-"
                           f"separated from {', '.join(COMPARE_CONFIGS)} "
                           f"(default {','.join(COMPARE_DEFAULT)})")
    args = parser.parse_args()
    if args.compare:
        configs = [c for c in args.compare.split(",") if c]
        if bad := [c for c in configs
                   if c.partition("@")[0] not in COMPARE_CONFIGS
                   or ("@" in c and c.startswith("empty-"))]:
            parser.error(f"--compare: unknown {', '.join(bad)}; choose from "
                         f"{', '.join(COMPARE_CONFIGS)}")
        compare(args, configs)
        return

    docker_client, redis_server, server, server_ip = start_workload_world()
    if args.sock_slots:
        from collector.ebpf.tracer import ConnectionTracer
        ConnectionTracer.SOCK_SLOTS = args.sock_slots
    collector = build_collector(
        redis_url=redis_server.url, prefix="portolan", host_id="bench-host",
        node_ttl=30, flow_ttl=300, history=HistoryPolicy(),
        trace_udp=not args.no_udp)
    if collector.tracer.mode != "ebpf":
        sys.exit(f"the eBPF tracer did not load: {collector.host.mode_reason}")
    hooks = Hooks.attached(collector.tracer._bpf)
    result = {}
    phases: list[dict] = []
    step_cpu: list[float] = []
    perf_hz = 999
    perf_data = Path(tempfile.mkdtemp(), "toggle.data")
    perf = None
    try:
        load = threading.Thread(target=lambda: result.update(
            run=run_load(docker_client, server_ip, args.seconds + 6, 0,
                         args.concurrency, tick=TICK)))
        load.start()
        time.sleep(3)  # the client container starts
        collector.step()
        if args.steps_only or args.empty:
            hooks.detach()
            hooks = (empty_hooks(not args.no_udp) if args.empty
                     else Hooks(hooks.bpf))
            hooks.attach()
        steps = not args.empty
        if args.perf:
            perf = subprocess.Popen(
                ["perf", "record", "-a", "-e", "cpu-clock", "-F", str(perf_hz),
                 "-k", "CLOCK_MONOTONIC", "-o", str(perf_data)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        on = True
        end = time.monotonic() + args.seconds
        switches = {True: [], False: []}
        while time.monotonic() < end:
            on = not on
            t = time.monotonic()
            (hooks.attach if on else hooks.detach)()
            start = time.monotonic()
            switches[on].append(start - t)
            if on and steps:
                for k in (1, 2):
                    time.sleep(max(0.0, start + k * args.phase / 2 - time.monotonic()))
                    t = time.thread_time()
                    collector.step()
                    step_cpu.append(time.thread_time() - t)
            else:
                time.sleep(args.phase)
            phases.append({"on": on, "start": start + SETTLE,
                           "end": time.monotonic()})
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        load.join()
    finally:
        collector.tracer.close()
        collector.watcher.close()
        server.remove(force=True)
        redis_server.stop()
    client, counts = result["run"]
    client.remove(force=True)
    per_process = counts["ticks"]
    for phase in phases:
        n = connections_between(per_process, phase["start"], phase["end"])
        phase["connections"] = n
        phase["rate"] = n / (phase["end"] - phase["start"])

    ratios = neighbour_ratios(phases)
    on_rates = [p["rate"] for p in phases if p["on"]]
    off_rates = [p["rate"] for p in phases if not p["on"]]
    q1, q3 = quartiles(ratios)
    config = ("steps only (BPF detached)" if args.steps_only
              else "empty programs" if args.empty else "the collector")
    config += ", PORTOLAN_TRACE_UDP=0" if args.no_udp else ""
    print(f"{len(phases)} phases of {args.phase:g} s over {args.seconds:g} s, {config}")
    print(f"conn/s median: on {statistics.median(on_rates):.0f}, "
          f"off {statistics.median(off_rates):.0f}")
    print("ratio on / mean of neighbouring offs: "
          f"median {statistics.median(ratios):.3f} "
          f"(quartiles {q1:.3f}-{q3:.3f}, {len(ratios)} phases); "
          f"pooled {statistics.fmean(on_rates) / statistics.fmean(off_rates):.3f} "
          "(goal >= 0.97)")
    print(f"switching took {1000 * statistics.median(switches[True]):.0f} ms "
          f"(attach), {1000 * statistics.median(switches[False]):.0f} ms (detach); "
          f"each phase leaves out its first {SETTLE} s")
    if step_cpu:
        print(f"collector step: {1000 * statistics.median(step_cpu):.1f} ms CPU "
              f"(median of {len(step_cpu)}), one a second")
    if perf is not None:
        script = subprocess.run(
            ["perf", "script", "-i", str(perf_data), "-F", "time,ip,sym"],
            capture_output=True, text=True, check=True).stdout
        connections = {on: sum(p["connections"] for p in phases if p["on"] == on)
                       for on in (True, False)}
        print_symbol_costs(samples_by_phase(script, phases), connections,
                           perf_hz, args.perf)


if __name__ == "__main__":
    main()
