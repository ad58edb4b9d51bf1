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
machine without Portolan; the collector's process stays, idle.

    .venv/bin/python bench/toggle_overhead.py [--seconds 120] [--phase 2] [--no-udp]

Needs root, eBPF, Docker (started if not running) and redis-server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from bisect import bisect_right
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from collector_overhead import quartiles, run_load, start_server  # noqa: E402

from collector.reporter import HistoryPolicy  # noqa: E402
from collector.runner import build_collector  # noqa: E402
from tests.conftest import RedisServer, build_test_image, ensure_dockerd  # noqa: E402

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


def empty_hooks(trace_udp: bool) -> Hooks:
    """Programs that only return, on the collector's hooks, attached as it
    attaches them (see bench/empty_hooks.py); not attached yet."""
    from bcc import BPF
    from empty_hooks import EMPTY_PROGRAM

    from collector.ebpf.support import (
        OPTIONAL_HOOKS,
        RAW_HOOKS,
        REQUIRED_HOOKS,
        available_hooks,
    )
    from collector.ebpf.tracer import ROUTE_HOOKS

    here = available_hooks()
    wanted = [h for h in [*REQUIRED_HOOKS, *OPTIONAL_HOOKS] if here.get(h)
              and (trace_udp or h not in ROUTE_HOOKS)]
    return Hooks(
        BPF(text=EMPTY_PROGRAM),
        [(h.encode(), b"empty") for h in wanted if h not in RAW_HOOKS],
        [(h.split(":")[1].encode(), b"empty_raw") for h in wanted if h in RAW_HOOKS],
    )


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


def neighbour_ratios(phases: list[dict]) -> list[float]:
    """Each "on" phase's rate over the mean rate of the "off" phases beside it.

    >>> neighbour_ratios([{"on": False, "rate": 100}, {"on": True, "rate": 95},
    ...                   {"on": False, "rate": 110}])
    [0.9047619047619048]
    """
    ratios = []
    for i, phase in enumerate(phases):
        if phase["on"] and 0 < i < len(phases) - 1:
            before, after = phases[i - 1], phases[i + 1]
            if not before["on"] and not after["on"]:
                ratios.append(phase["rate"] / ((before["rate"] + after["rate"]) / 2))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--phase", type=float, default=2.0,
                        help="seconds on, then as many off")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--no-udp", action="store_true",
                        help="the collector with PORTOLAN_TRACE_UDP=0")
    parser.add_argument("--sock-slots", type=int, default=0,
                        help="the TCP socket table's size (default: the tracer's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--steps-only", action="store_true",
                      help="the collector's programs stay detached; \"on\" "
                           "phases only run its steps (its userspace cost)")
    mode.add_argument("--empty", action="store_true",
                      help="programs that only return, on the same hooks, and "
                           "no steps (the floor: the cost of the hits)")
    args = parser.parse_args()

    docker_client = ensure_dockerd()
    if docker_client is None:
        sys.exit("no Docker engine")
    build_test_image(docker_client)
    redis_server = RedisServer()
    redis_server.start()
    server, server_ip = start_server(docker_client)
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


if __name__ == "__main__":
    main()
