"""Runs of a BPF program the kernel skipped, read from its program info.

A tracepoint program does not run while another tracing program runs on the
same CPU (the kernel's guard against recursion): when a softirq that hits one
of our tracepoints interrupts one of our programs, that event is skipped and
its count would be lost without a word. The kernel counts these skips per
program (``recursion_misses`` in ``struct bpf_prog_info``, Linux 5.12+); the
tracer reads them every interval and reports them with its lost counts.
"""

from __future__ import annotations

import ctypes
import functools
import struct

__all__ = ["ProgramMisses", "parse_prog_info"]

# Offsets in the UAPI struct bpf_prog_info (linux/bpf.h); stable by contract.
_RUN_TIME_NS, _RUN_CNT, _RECURSION_MISSES = 192, 200, 208
PROG_INFO_SIZE = 232


def parse_prog_info(info: bytes, length: int) -> dict[str, int]:
    """run_time_ns, run_cnt and recursion_misses from a filled bpf_prog_info;
    fields past ``length`` (what this kernel filled) are 0.

    >>> buf = bytearray(232); buf[208:216] = (3).to_bytes(8, "little")
    >>> parse_prog_info(bytes(buf), 232)["recursion_misses"]
    3
    >>> parse_prog_info(bytes(buf), 208)["recursion_misses"]  # a pre-5.12 kernel
    0
    """
    def field(offset: int) -> int:
        if offset + 8 > length:
            return 0
        return struct.unpack_from("=Q", info, offset)[0]

    return {"run_time_ns": field(_RUN_TIME_NS), "run_cnt": field(_RUN_CNT),
            "recursion_misses": field(_RECURSION_MISSES)}


@functools.cache
def _get_info():
    """libbcc's bpf_obj_get_info (BPF_OBJ_GET_INFO_BY_FD), typed once."""
    from bcc.libbcc import lib

    get_info = lib.bpf_obj_get_info
    get_info.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    get_info.restype = ctypes.c_int
    return get_info


def read_prog_info(fd: int) -> dict[str, int]:
    """The kernel's info on the program behind ``fd``."""
    buf = ctypes.create_string_buffer(PROG_INFO_SIZE)
    length = ctypes.c_uint32(PROG_INFO_SIZE)
    if _get_info()(fd, buf, ctypes.byref(length)) != 0:
        raise OSError(f"bpf_obj_get_info on fd {fd} failed")
    return parse_prog_info(buf.raw, length.value)


class ProgramMisses:
    """Skipped runs of a set of programs, as deltas since the previous call."""

    def __init__(self, fds: list[int]):
        self.fds = list(fds)
        self._seen = {fd: self._misses(fd) for fd in self.fds}

    @staticmethod
    def _misses(fd: int) -> int:
        try:
            return read_prog_info(fd)["recursion_misses"]
        except OSError:
            return 0

    def delta(self) -> int:
        total = 0
        for fd in self.fds:
            now = self._misses(fd)
            total += now - self._seen[fd]
            self._seen[fd] = now
        return total
