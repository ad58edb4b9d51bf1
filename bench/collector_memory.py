"""The collector's resident memory, stage by stage: where the 219 MB goes and
what can be given back once the eBPF program is loaded.

bcc compiles the program with LLVM and clang, linked into the process as
shared libraries (libLLVM, libclang-cpp); after the one compile at start
nothing calls them again, but their touched code pages and the heap the
compile left stay resident. This prints VmRSS (and its anonymous and
file-backed parts, from /proc/self/status) after each stage:

  start             Python with the collector's modules, before bcc
  import bcc        libbcc and the LLVM/clang libraries mapped
  tracer loaded     ConnectionTracer(): compile, load, attach, self-test
  gc, malloc_trim   Python collects the BTF reader's garbage (kernel_fields),
                    glibc returns freed heap (the compile's) to the kernel
  page out LLVM     MADV_PAGEOUT on the LLVM/clang mappings: their clean
                    code pages leave this process (re-read from disk only if
                    it ever compiled again). The tracer does both itself once
                    loaded (collector.ebpf.compiler_memory); here they are
                    held back to be measured one at a time
  read              one tracer.read(), to show that reading needs none of it

and, for comparison, the same process shape with no tracer at all (the /proc
fallback): the floor that a compile elsewhere could reach.

    .venv/bin/python bench/collector_memory.py [--program auto|raw|tracepoint]

Needs root and bcc.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def rss() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of this process, in MB."""
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M)[1]) // 1024
            for key in ("VmRSS", "RssAnon", "RssFile")}


def stages(program: str) -> list[tuple[str, dict]]:
    import collector.agent  # noqa: F401 - the collector's own modules
    import collector.runner  # noqa: F401

    out = [("start", rss())]
    import bcc  # noqa: F401

    out.append(("import bcc", rss()))
    from collector.ebpf import tracer as tracer_module
    from collector.ebpf.compiler_memory import release_compiler_memory

    # Loaded as the collector loads it, less its release at the end (below).
    tracer_module.release_compiler_memory = lambda: 0
    tracer = tracer_module.ConnectionTracer(program=program)
    out.append((f"tracer loaded ({tracer.program} program)", rss()))
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    out.append(("gc.collect, malloc_trim", rss()))
    advised = release_compiler_memory()
    out.append((f"page out LLVM/clang ({advised >> 20} MB mapped)", rss()))
    tracer.read()
    out.append(("read", rss()))
    tracer.close()
    return out


def fallback_floor() -> dict:
    """RSS of a fresh process with the collector's modules and the /proc
    tracer, no bcc: what the collector needs besides the compiler."""
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r})\n"
            "import collector.agent, collector.runner\n"
            "from collector.procfs import ProcfsTracer\n"
            "t = ProcfsTracer(); t.read()\n"
            "from bench.collector_memory import rss\n"
            "print(json.dumps(rss()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default="auto",
                        choices=("auto", "raw", "tracepoint"))
    args = parser.parse_args()
    print(f"{'stage':<44} {'VmRSS':>6} {'anon':>6} {'file':>6}  (MB)")
    for name, mem in stages(args.program):
        print(f"{name:<44} {mem['VmRSS']:>6} {mem['RssAnon']:>6} {mem['RssFile']:>6}")
    floor = fallback_floor()
    print(f"{'no bcc at all (/proc tracer), for comparison':<44} "
          f"{floor['VmRSS']:>6} {floor['RssAnon']:>6} {floor['RssFile']:>6}")


if __name__ == "__main__":
    main()
