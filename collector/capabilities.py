"""The Linux capabilities the collector holds, and what it lacks for each part.

Outside ``--privileged`` (docker-compose.yml, the Kubernetes DaemonSet) the
collector gets only the capabilities it needs. When one is missing it says
which, instead of letting ``bpf()`` fail with a bare EPERM:

* eBPF tracing: ``CAP_BPF`` and ``CAP_PERFMON`` on kernels 5.8 and later,
  ``CAP_SYS_ADMIN`` before (it also stands for both on container engines that
  cannot grant them by name, e.g. Docker Engine before 23).
* process details (names, users, network namespaces of other processes, read
  through ``/proc/<pid>/ns`` and ``/proc/<pid>/root``): ``CAP_SYS_PTRACE``.

Found by trial on Linux 6.18 (README, Deploy): ``CAP_SYS_RESOURCE`` is not
needed since 5.11 (BPF memory is charged to the cgroup, not RLIMIT_MEMLOCK),
nor ``CAP_DAC_READ_SEARCH`` or ``CAP_NET_ADMIN``.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "CAPABILITY_BITS",
    "effective_capabilities",
    "missing_for_ebpf",
    "missing_for_process_details",
    "parse_effective",
]

# Bit numbers from <linux/capability.h>; only those the collector asks about.
CAPABILITY_BITS = {
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}


def parse_effective(status: str) -> frozenset[str]:
    """The named capabilities set in the ``CapEff`` line of ``/proc/<pid>/status``.

    >>> sorted(parse_effective("Name:\\tx\\nCapEff:\\t000000c000080000\\n"))
    ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_PTRACE']
    >>> parse_effective("Name:\\tx\\n")
    frozenset()
    """
    found = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", status, re.MULTILINE)
    mask = int(found[1], 16) if found else 0
    return frozenset(name for name, bit in CAPABILITY_BITS.items() if mask >> bit & 1)


def effective_capabilities(status_path: str = "/proc/self/status") -> frozenset[str]:
    """This process's effective capabilities (empty if the file is unreadable)."""
    try:
        return parse_effective(Path(status_path).read_text())
    except OSError:
        return frozenset()


def missing_for_ebpf(held: frozenset[str], kernel: tuple[int, int]) -> list[str]:
    """Capabilities the eBPF tracer lacks on ``kernel`` (major, minor); [] if none.

    >>> missing_for_ebpf(frozenset({"CAP_BPF"}), (6, 1))
    ['CAP_PERFMON']
    >>> missing_for_ebpf(frozenset({"CAP_SYS_ADMIN"}), (6, 1))
    []
    >>> missing_for_ebpf(frozenset({"CAP_BPF", "CAP_PERFMON"}), (5, 4))
    ['CAP_SYS_ADMIN']
    """
    if "CAP_SYS_ADMIN" in held:
        return []
    if kernel < (5, 8):  # CAP_BPF and CAP_PERFMON came with 5.8
        return ["CAP_SYS_ADMIN"]
    return [name for name in ("CAP_BPF", "CAP_PERFMON") if name not in held]


def missing_for_process_details(held: frozenset[str]) -> list[str]:
    """Capabilities needed to read other processes' namespaces and root; [] if none.

    >>> missing_for_process_details(frozenset())
    ['CAP_SYS_PTRACE']
    """
    return [] if "CAP_SYS_PTRACE" in held else ["CAP_SYS_PTRACE"]
