"""Run a loaded raw-tracepoint BPF program once, from userspace.

The tracer folds its live sockets' counts into the flow map before each read
with a program attached to nothing (``flush_sockets`` in sockets.h): the
kernel runs it on this thread through BPF_PROG_TEST_RUN (raw tracepoints,
Linux 5.10+), with the arguments given as the tracepoint's.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = ["run_raw_tracepoint"]

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_TEST_RUN = 10


class _TestRunAttr(ctypes.Structure):
    """The BPF_PROG_TEST_RUN member of the UAPI union bpf_attr (linux/bpf.h)."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


@functools.cache
def _syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall


def run_raw_tracepoint(fd: int, *args: int) -> int:
    """Run the raw-tracepoint program behind ``fd`` with ``args`` as its
    arguments; its return value (OSError if the kernel refuses)."""
    number = _SYS_BPF.get(os.uname().machine)
    if number is None:
        raise OSError(f"bpf(2) syscall number unknown on {os.uname().machine}")
    ctx = (ctypes.c_uint64 * len(args))(*args)
    attr = _TestRunAttr(prog_fd=fd, ctx_size_in=ctypes.sizeof(ctx),
                        ctx_in=ctypes.addressof(ctx))
    if _syscall()(number, _BPF_PROG_TEST_RUN, ctypes.byref(attr),
                  ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return attr.retval
