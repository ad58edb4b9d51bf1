"""Give back the memory bcc's one compile leaves resident.

bcc compiles the program with LLVM and clang, shared libraries mapped into the
collector (libLLVM, libclang-cpp). After the compile at start nothing calls
them again, yet their touched code pages and the heap the compile freed stay
resident, and so is the garbage of reading the kernel's BTF (bench/collector_memory.py
measures each). All are handed back here: a garbage collection, glibc's
malloc_trim returning freed heap, and MADV_PAGEOUT (Linux 5.4+) drops the
libraries' clean pages from this process (read again from disk only if it
ever compiles again, as a fallback to the other program does). What stays is
the compiled module bcc keeps for the program's life.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import re
from pathlib import Path

__all__ = ["release_compiler_memory"]

log = logging.getLogger("portolan.collector.ebpf")

MADV_PAGEOUT = 21
_COMPILER_LIBS = re.compile(r"/lib(LLVM|clang)[^/]*$")


def release_compiler_memory(maps: Path = Path("/proc/self/maps")) -> int:
    """Trim the heap and page out the compiler libraries; bytes advised.
    Failures are logged and ignored: only memory is at stake."""
    try:
        gc.collect()  # the BTF's types (kernel_fields) are freed by now
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        advised = 0
        for line in maps.read_text().splitlines():
            fields = line.split()
            if len(fields) < 6 or not _COMPILER_LIBS.search(fields[5]):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(start, end - start, MADV_PAGEOUT) == 0:
                advised += end - start
        return advised
    except (OSError, AttributeError, ValueError) as exc:
        log.info("ebpf: compiler memory not released: %s", exc)
        return 0
