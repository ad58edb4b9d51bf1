"""Skipped program runs are read from the kernel, so the tracer can report them."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.ebpf]

# "outer" spins for ~0.1 ms in process context on each getppid() of this
# process; the timer interrupt that lands meanwhile fires hrtimer_expire_entry,
# and the kernel skips "inner" there: one tracing program runs per CPU at a
# time. The same happens to the tracer's programs when a softirq hits one of
# its tracepoints while another of its programs runs.
NESTING = b"""
int outer(void *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TGID)
        return 0;
    volatile u64 x = 0;
    for (int i = 0; i < 150000; i++)
        x += i;
    return 0;
}
int inner(void *ctx) { return 0; }
"""


def test_skipped_runs_are_counted(ebpf_ready):
    from bcc import BPF

    from collector.ebpf.prog_info import ProgramMisses, read_prog_info

    bpf = BPF(text=NESTING, cflags=[f"-DTGID={os.getpid()}"])
    try:
        bpf.attach_tracepoint(tp=b"timer:hrtimer_expire_entry", fn_name=b"inner")
        inner = bpf.funcs[b"inner"].fd
        misses = ProgramMisses([inner])
        before = read_prog_info(inner)["recursion_misses"]
        bpf.attach_tracepoint(tp=b"syscalls:sys_enter_getppid", fn_name=b"outer")
        skipped = 0
        for _ in range(50):  # ~10 ms of spinning per round, timer ticks every 4
            for _ in range(100):
                os.getppid()
            skipped += misses.delta()
            if skipped:
                break
        bpf.detach_tracepoint(tp=b"syscalls:sys_enter_getppid")
        skipped += misses.delta()
        assert skipped > 0
        assert read_prog_info(inner)["recursion_misses"] - before == skipped
        assert misses.delta() == 0  # deltas: nothing nests any more
    finally:
        bpf.cleanup()
