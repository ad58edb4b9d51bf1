"""The collector's hooks with programs that do nothing: the floor of its cost.

Attaches one BPF program that only returns to every tracepoint the collector
uses on this kernel (or to the ones named), the way the collector attaches it
(raw or not), then waits for SIGINT/SIGTERM.
Run beside a workload, its cost is what the kernel charges for each
tracepoint hit (building the event record, calling into BPF) before any of
the collector's own work: no counting design on these hooks costs less.
bench/tracing_share.py runs it as the "empty-hooks" configuration.

    .venv/bin/python bench/empty_hooks.py [--hooks sock:inet_sock_set_state,...]

Needs root and bcc.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.ebpf.support import (  # noqa: E402
    OPTIONAL_HOOKS,
    RAW_HOOKS,
    REQUIRED_HOOKS,
    available_hooks,
)

# One function per program type: bcc loads a function once, with one type.
EMPTY_PROGRAM = b"""
int empty(void *ctx) { return 0; }
int empty_raw(void *ctx) { return 0; }
"""


def attach_plan(hooks, raw_all: bool = False) -> tuple[list, list]:
    """(regular, raw): the (tracepoint, function) pairs that put an empty
    program on each of ``hooks`` (category:event), raw where the collector
    attaches raw, or everywhere with ``raw_all``.

    >>> attach_plan(["sock:inet_sock_set_state", "sock:sock_send_length"])
    ([(b'sock:inet_sock_set_state', b'empty')], [(b'sock_send_length', b'empty_raw')])
    """
    regular, raw = [], []
    for hook in hooks:
        if raw_all or hook in RAW_HOOKS:
            raw.append((hook.split(":")[1].encode(), b"empty_raw"))
        else:
            regular.append((hook.encode(), b"empty"))
    return regular, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", default="",
                        help="comma-separated category:event (default: all the "
                             "collector's hooks this kernel has)")
    parser.add_argument("--raw", action="store_true",
                        help="attach every hook as a raw tracepoint (no event "
                             "record built); by default only those the "
                             "collector attaches raw are")
    args = parser.parse_args()
    here = available_hooks()
    wanted = [h for h in args.hooks.split(",") if h] or [
        *REQUIRED_HOOKS, *OPTIONAL_HOOKS]
    missing = [h for h in wanted if not here.get(h)]
    if args.hooks and missing:
        sys.exit(f"not on this kernel: {', '.join(missing)}")

    from bcc import BPF

    bpf = BPF(text=EMPTY_PROGRAM)
    regular, raw = attach_plan([h for h in wanted if here.get(h)], args.raw)
    for tp, fn in regular:
        bpf.attach_tracepoint(tp=tp, fn_name=fn)
    for tp, fn in raw:
        bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)
    print("attached: " + ", ".join(h for h in wanted if here.get(h)), flush=True)

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.pause()


if __name__ == "__main__":
    main()
