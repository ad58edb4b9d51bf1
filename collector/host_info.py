"""The host itself: identity, size, load, configured labels, uncontained processes.

Everything is read from /proc (``proc`` can point at a recorded tree) and the
environment; parsers are pure functions over file text.

Labels come from ``PORTOLAN_HOST_LABELS``, e.g. ``region=eu,zone=a,role=db``.
A malformed value is a configuration error and fails fast with a ValueError
naming the variable, rather than silently dropping a label.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from collector.cgroups import container_for_proc_cgroup

__all__ = [
    "HOST_LABELS_ENV",
    "HostInfo",
    "HostLoad",
    "HostProcess",
    "host_processes",
    "labels_from_env",
    "parse_host_labels",
    "parse_loadavg",
    "parse_meminfo",
    "parse_uptime",
    "read_host_info",
    "read_host_load",
]

HOST_LABELS_ENV = "PORTOLAN_HOST_LABELS"

_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


@dataclass(slots=True)
class HostLoad:
    """The part of a host reading that changes every interval."""

    cpus: int
    memory_total_bytes: int = 0
    memory_available_bytes: int = 0
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    uptime_seconds: float = 0.0


@dataclass(slots=True)
class HostInfo:
    """One reading of the host's identity, with its load at that moment."""

    hostname: str
    kernel: str
    load: HostLoad
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HostProcess:
    """A host process that is in no container."""

    pid: int
    command: str


def parse_host_labels(
    text: str | None, setting: str = HOST_LABELS_ENV
) -> dict[str, str]:
    """Parse ``key=value,key=value``; raise ValueError naming ``setting`` if malformed.

    Blank items (a trailing comma) are ignored; spaces around keys and values
    are stripped; a value may be empty but a key may not, nor appear twice.

    >>> parse_host_labels("region=eu, zone=a,role=db")
    {'region': 'eu', 'zone': 'a', 'role': 'db'}
    """
    labels: dict[str, str] = {}
    if not text or not text.strip():
        return labels
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(
                f"{setting}: {item.strip()!r} is not key=value "
                f"(expected e.g. 'region=eu,zone=a,role=db')"
            )
        if not _LABEL_KEY.match(key):
            raise ValueError(
                f"{setting}: invalid label key {key!r} in {item.strip()!r} "
                "(letters, digits, '.', '_', '/', '-')"
            )
        if "=" in value:
            raise ValueError(f"{setting}: {item.strip()!r} has more than one '='")
        if key in labels:
            raise ValueError(f"{setting}: label {key!r} is given twice")
        labels[key] = value
    return labels


def labels_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Host labels from ``PORTOLAN_HOST_LABELS`` (empty when unset)."""
    env = os.environ if environ is None else environ
    return parse_host_labels(env.get(HOST_LABELS_ENV))


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo.

    >>> parse_meminfo("MemTotal: 2048 kB\\nMemFree: 10 kB\\nMemAvailable: 1024 kB\\n")
    (2097152, 1048576)
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if key in ("MemTotal", "MemAvailable", "MemFree") and fields:
            try:
                scale = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
                values[key] = int(fields[0]) * scale
            except ValueError:
                continue
    # Kernels before 3.14 have no MemAvailable; MemFree is the nearest figure.
    return values.get("MemTotal", 0), values.get(
        "MemAvailable", values.get("MemFree", 0)
    )


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages from /proc/loadavg.

    >>> parse_loadavg("0.50 0.25 0.10 1/200 4242\\n")
    (0.5, 0.25, 0.1)
    """
    fields = text.split()
    try:
        return float(fields[0]), float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        return 0.0, 0.0, 0.0


def parse_uptime(text: str) -> float:
    """Seconds since boot from /proc/uptime.

    >>> parse_uptime("12345.67 20000.00\\n")
    12345.67
    """
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return 0.0


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_host_load(proc: str | os.PathLike = "/proc") -> HostLoad:
    """Read what changes from one interval to the next: memory, load, uptime."""
    proc = os.fspath(proc)
    total, available = parse_meminfo(_read(f"{proc}/meminfo"))
    load1, load5, load15 = parse_loadavg(_read(f"{proc}/loadavg"))
    return HostLoad(
        cpus=os.cpu_count() or 1,
        memory_total_bytes=total,
        memory_available_bytes=available,
        load1=load1,
        load5=load5,
        load15=load15,
        uptime_seconds=parse_uptime(_read(f"{proc}/uptime")),
    )


def read_host_info(
    proc: str | os.PathLike = "/proc", environ: Mapping[str, str] | None = None
) -> HostInfo:
    """Read the host's identity and load; raise ValueError on malformed labels."""
    proc = os.fspath(proc)
    labels = labels_from_env(environ)
    uname = os.uname()
    return HostInfo(
        hostname=_read(f"{proc}/sys/kernel/hostname").strip() or uname.nodename,
        kernel=_read(f"{proc}/sys/kernel/osrelease").strip() or uname.release,
        load=read_host_load(proc),
        labels=labels,
    )


def host_processes(
    proc: str | os.PathLike = "/proc", include_kernel_threads: bool = False
) -> list[HostProcess]:
    """Processes in no container (by their cgroup), sorted by pid.

    Kernel threads (no command line) are left out unless asked for.
    """
    proc = os.fspath(proc)
    result = []
    try:
        names = os.listdir(proc)
    except OSError:
        return result
    for name in names:
        if not name.isdigit():
            continue
        cgroup = _read(f"{proc}/{name}/cgroup")
        comm = _read(f"{proc}/{name}/comm").strip()
        if not cgroup or not comm:
            continue  # exited meanwhile
        if container_for_proc_cgroup(cgroup) is not None:
            continue
        if not include_kernel_threads and not _read(f"{proc}/{name}/cmdline"):
            continue
        result.append(HostProcess(int(name), comm))
    result.sort(key=lambda p: p.pid)
    return result
