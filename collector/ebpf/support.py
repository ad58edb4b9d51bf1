"""What this kernel and host offer the eBPF connection tracer.

The tracer needs root, bcc, kernel headers for bcc to compile against, tracefs
and a handful of tracepoints; other tracepoints are optional and only cost
some counters when absent. Everything here is a cheap check with no side
effect except mounting tracefs when it is missing.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

__all__ = [
    "OPTIONAL_HOOKS",
    "RAW_HOOKS",
    "REQUIRED_HOOKS",
    "available_hooks",
    "ebpf_unavailable_reason",
    "kernel_version",
    "missing_optional_hooks",
    "tracefs_root",
]

# Without these there is no connection tracing at all.
REQUIRED_HOOKS = {
    "sock:inet_sock_set_state": "TCP connects, accepts and listening sockets",
}

# hook -> what is lost without it (the tracer reports this in missing_hooks).
OPTIONAL_HOOKS = {
    "tcp:tcp_receive_reset": (
        "refused connects count as timeouts; received resets are not counted"
    ),
    "tcp:tcp_send_reset": "sent resets are not counted",
    "cgroup:cgroup_mkdir": (
        "containers that exit between two cgroup scans are not attributed"
    ),
    "tcp:tcp_retransmit_skb": "retransmits are not counted",
    "sched:sched_process_exec": (
        "a host process that exits before the collector reads it is named "
        "after the thread that made the call"
    ),
    "sock:sock_send_length": "bytes sent and UDP datagrams are not counted",
    "sock:sock_recv_length": "bytes received and UDP datagrams are not counted",
    "fib:fib_table_lookup": (
        "IPv4 UDP is not counted; IPv4 connects with no route are not counted"
    ),
    "fib6:fib6_table_lookup": (
        "IPv6 UDP is not counted; IPv6 connects with no route are not counted"
    ),
}

# Hooks connections.c attaches as raw tracepoints (no event record built).
RAW_HOOKS = ("sock:sock_send_length", "sock:sock_recv_length")

_TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_root() -> Path | None:
    """The mounted tracefs directory, mounting it at /sys/kernel/tracing if needed."""
    for candidate in _TRACEFS_CANDIDATES:
        if Path(candidate, "events").is_dir():
            return Path(candidate)
    if os.geteuid() == 0 and Path(_TRACEFS_CANDIDATES[0]).is_dir():
        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", _TRACEFS_CANDIDATES[0]],
            capture_output=True,
            check=False,
        )
        if Path(_TRACEFS_CANDIDATES[0], "events").is_dir():
            return Path(_TRACEFS_CANDIDATES[0])
    return None


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel, or of ``release``.

    >>> kernel_version("6.18.0-1-amd64"), kernel_version("5.4.0-150-generic")
    ((6, 18), (5, 4))
    >>> kernel_version("weird")
    (0, 0)
    """
    numbers = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)


def _hook_exists(root: Path, hook: str) -> bool:
    category, _, event = hook.partition(":")
    return Path(root, "events", category, event, "format").is_file()


def available_hooks() -> dict[str, bool]:
    """Every hook the tracer can use -> whether this kernel has it."""
    root = tracefs_root()
    hooks = list(REQUIRED_HOOKS) + list(OPTIONAL_HOOKS)
    if root is None:
        return {hook: False for hook in hooks}
    return {hook: _hook_exists(root, hook) for hook in hooks}


def missing_optional_hooks(hooks: dict[str, bool] | None = None) -> list[str]:
    """Human messages for optional hooks this kernel lacks: ``"hook: what is lost"``."""
    hooks = available_hooks() if hooks is None else hooks
    return [
        f"{hook}: {lost}"
        for hook, lost in OPTIONAL_HOOKS.items()
        if not hooks.get(hook, False)
    ]


def ebpf_unavailable_reason() -> str | None:
    """Why the eBPF tracer cannot load here, or None if it can."""
    if os.geteuid() != 0:
        return "not running as root (eBPF needs CAP_BPF and CAP_PERFMON)"
    try:
        import bcc  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no bcc
        return f"bcc is not importable ({exc}); install python3-bpfcc"
    build = Path("/lib/modules", platform.release(), "build")
    if not build.exists():
        return f"no kernel headers at {build}; install linux-headers-$(uname -r)"
    if tracefs_root() is None:
        return "tracefs is not mounted and could not be mounted at /sys/kernel/tracing"
    hooks = available_hooks()
    missing = [hook for hook in REQUIRED_HOOKS if not hooks[hook]]
    if missing:
        return "required tracepoints missing: " + ", ".join(missing)
    return None
