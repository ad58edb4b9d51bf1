"""Per-container resource metrics read straight from cgroup files, v1 and v2.

Why cgroup files and not ``docker stats``: the engine's stats endpoint costs a
request (and a second of sampling) per container; the files are what it reads
anyway, and a pass over hundreds of containers is a few thousand small reads.

Layouts
-------
* **v2 (unified)**: ``root`` itself holds ``cgroup.controllers``; a container is
  one directory (``docker/<id>``, ``system.slice/docker-<id>.scope``,
  ``kubepods.slice/.../cri-containerd-<id>.scope``...: see ``collector.cgroups``).
* **v1 (and hybrid)**: one hierarchy per controller (``root/cpu``,
  ``root/memory``, or joined ``root/cpu,cpuacct``), the same relative path in
  each. When v1 controllers are mounted they are the ones that account, so
  they win over a controller-less ``root/unified``.

A container is found through its init pid's ``/proc/<pid>/cgroup`` when the
caller knows the pid, else at a well-known path, else by a shallow walk for a
directory named after the id (cached; misses retried every ``rescan_interval``
seconds). Where runtimes put containers, and the walk, live in
``collector.cgroups``: that module knows container cgroups, this one reads them.

Parsers are pure functions over file text; :class:`CgroupMetricsReader` does
the I/O. A cgroup that vanishes mid-read gives ``None``, never an exception.

Caveats: when the collector runs in its own cgroup namespace, the paths in
``/proc/<pid>/cgroup`` are relative to it and the pid lookup falls back to the
walk. v2 ``memory.events`` counts OOM kills of descendants too (unless the
hierarchy is mounted with ``memory_localevents``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass

from collector.cgroups import (
    container_cgroup_at_known_path,
    container_cgroup_by_walk,
    parse_proc_cgroup,
)

__all__ = [
    "CgroupMetricsReader",
    "CgroupPaths",
    "ContainerMetrics",
    "cfs_quota_cores",
    "cpu_cores",
    "cpu_percent_of_limit",
    "detect_layout",
    "parse_blkio",
    "parse_cpu_max",
    "parse_flat_keyed",
    "parse_io_stat",
    "parse_limit",
    "read_container_metrics",
]

log = logging.getLogger("portolan.collector.cgroup_metrics")

# v1 reports "no limit" as the largest page-aligned counter value
# (9223372036854771712 on 4 KiB pages); anything this big means unlimited.
_UNLIMITED = 1 << 60

_WALK_DEPTH = 6


# ------------------------------------------------------------------ records


@dataclass(slots=True)
class ContainerMetrics:
    """One reading of one container's cgroup counters (0/None when unknown)."""

    container_id: str
    cgroup_version: int  # 1 or 2
    timestamp: float  # time.monotonic() of the read, for rates
    cpu_usage_ns: int = 0  # cumulative CPU time of all tasks
    cpu_limit_cores: float | None = None  # cpu.max / cfs quota:period; None = none
    cpu_periods: int = 0  # enforcement periods elapsed (only with a quota)
    cpu_throttled_periods: int = 0
    cpu_throttled_ns: int = 0
    memory_usage_bytes: int = 0
    memory_working_set_bytes: int = 0  # usage minus inactive file cache
    memory_limit_bytes: int | None = None
    memory_oom_kills: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    io_read_ops: int = 0
    io_write_ops: int = 0
    pids: int = 0
    pids_limit: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CgroupPaths:
    """Where one container's cgroup lives: one directory per controller.

    Under v2 every field is the same unified directory.
    """

    version: int
    cpu: str
    cpuacct: str
    memory: str
    blkio: str
    pids: str

    @property
    def procs_dir(self) -> str:
        """The directory whose ``cgroup.procs`` lists the container's processes."""
        return self.pids or self.memory or self.cpu

    def exists(self) -> bool:
        return os.path.isdir(self.procs_dir)


# ------------------------------------------------------------------ parsers


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """Parse ``key value`` lines (cpu.stat, memory.stat, memory.events...).

    >>> parse_flat_keyed("nr_periods 4\\nnr_throttled 1\\nbad\\n")
    {'nr_periods': 4, 'nr_throttled': 1}
    """
    result: dict[str, int] = {}
    if not text:
        return result
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def parse_limit(text: str | None) -> int | None:
    """A byte/count limit file (memory.max, memory.limit_in_bytes, pids.max).

    ``max``, ``-1`` and v1's huge "unlimited" value give None.

    >>> parse_limit("max\\n"), parse_limit("67108864\\n"), parse_limit("-1")
    (None, 67108864, None)
    """
    if text is None:
        return None
    text = text.strip()
    if text in ("", "max"):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value < 0 or value >= _UNLIMITED:
        return None
    return value


def parse_cpu_max(text: str | None) -> float | None:
    """Cores allowed by a v2 ``cpu.max`` (``"$QUOTA $PERIOD"``); None = no limit.

    >>> parse_cpu_max("50000 100000"), parse_cpu_max("max 100000")
    (0.5, None)
    """
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = parts[1] if len(parts) > 1 else "100000"
    return cfs_quota_cores(parts[0], period)


def cfs_quota_cores(quota: str | int | None, period: str | int | None) -> float | None:
    """Cores allowed by v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.

    >>> cfs_quota_cores("150000", "100000"), cfs_quota_cores("-1", "100000")
    (1.5, None)
    """
    try:
        q, p = int(str(quota).strip()), int(str(period).strip())
    except (TypeError, ValueError):
        return None
    if q <= 0 or p <= 0:
        return None
    return q / p


def parse_io_stat(text: str | None) -> dict[str, int]:
    """Sum a v2 ``io.stat`` over devices: rbytes, wbytes, rios, wios.

    >>> parse_io_stat("8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\\n")
    {'rbytes': 4096, 'wbytes': 0, 'rios': 1, 'wios': 0}
    """
    totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    if not text:
        return totals
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key in totals:
                try:
                    totals[key] += int(value)
                except ValueError:
                    continue
    return totals


def parse_blkio(text: str | None) -> tuple[int, int]:
    """(read, write) summed over devices from a v1 ``blkio.throttle.*`` file.

    The per-device lines are summed; the trailing ``Total`` line is ignored so
    nothing counts twice.

    >>> parse_blkio("8:0 Read 4096\\n8:0 Write 512\\n8:0 Total 4608\\nTotal 4608\\n")
    (4096, 512)
    """
    read = write = 0
    if not text:
        return read, write
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        try:
            value = int(fields[2])
        except ValueError:
            continue
        if fields[1] == "Read":
            read += value
        elif fields[1] == "Write":
            write += value
    return read, write


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _usage_ns(value) -> int:
    if isinstance(value, ContainerMetrics):
        return value.cpu_usage_ns
    return int(value or 0)


def cpu_cores(prev, cur, dt: float) -> float:
    """Average cores used between two readings ``dt`` seconds apart.

    ``prev``/``cur`` are cumulative CPU nanoseconds or :class:`ContainerMetrics`.
    A counter that went backwards (container restarted: a new cgroup) gives 0.

    >>> cpu_cores(1_000_000_000, 1_500_000_000, 1.0)
    0.5
    """
    if dt <= 0:
        return 0.0
    delta = _usage_ns(cur) - _usage_ns(prev)
    if delta <= 0:
        return 0.0
    return delta / 1e9 / dt


def cpu_percent_of_limit(cores: float, limit_cores: float | None) -> float | None:
    """Usage as a percentage of the CPU limit; None when there is no limit.

    >>> cpu_percent_of_limit(0.25, 0.5)
    50.0
    """
    if not limit_cores:
        return None
    return 100.0 * cores / limit_cores


def detect_layout(root: str) -> tuple[int, str, dict[str, str]]:
    """(version, v2 root, v1 controller -> hierarchy dir) for a cgroup mount root.

    v1 hierarchies are found by directory name, so joined mounts such as
    ``cpu,cpuacct`` are entered once per controller.
    """
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return 2, root, {}
    mounts: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        if entry.is_dir():
            for part in entry.name.split(","):
                mounts.setdefault(part, entry.path)
    if any(c in mounts for c in ("memory", "cpu", "cpuacct")):
        return 1, os.path.join(root, "unified"), mounts
    unified = os.path.join(root, "unified")
    if os.path.exists(os.path.join(unified, "cgroup.controllers")):
        return 2, unified, {}
    return 2, root, {}


# ------------------------------------------------------------------ reader


def _read(path: str) -> str | None:
    """A small kernel file's text, or None if it cannot be read (vanished)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 65536)
        if len(data) == 65536:  # rare: a huge memory.stat; read the rest
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data.decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


class CgroupMetricsReader:
    """Locate containers' cgroups under ``root`` (cached) and read their metrics."""

    def __init__(
        self,
        root: str | os.PathLike = "/sys/fs/cgroup",
        proc: str | os.PathLike = "/proc",
        rescan_interval: float = 10.0,
    ):
        self.root = os.fspath(root)
        self.proc = os.fspath(proc)
        self.rescan_interval = rescan_interval
        self.version, self.unified, self.mounts = detect_layout(self.root)
        self._paths: dict[str, CgroupPaths] = {}
        self._missed: dict[str, float] = {}  # id -> monotonic time of last miss

    # -- locating

    def _paths_for(self, rel: str) -> CgroupPaths:
        rel = rel.strip("/")
        if self.version == 2:
            d = os.path.join(self.unified, rel) if rel else self.unified
            return CgroupPaths(2, d, d, d, d, d)

        def dir_of(controller: str) -> str:
            base = self.mounts.get(controller)
            return os.path.join(base, rel) if base else ""

        return CgroupPaths(
            1,
            dir_of("cpu"),
            dir_of("cpuacct"),
            dir_of("memory"),
            dir_of("blkio"),
            dir_of("pids"),
        )

    def _from_pid(self, pid: int) -> CgroupPaths | None:
        text = _read(f"{self.proc}/{int(pid)}/cgroup")
        if not text:
            return None
        parsed = parse_proc_cgroup(text)
        if self.version == 2:
            rel = parsed.get("")
            paths = self._paths_for(rel) if rel else None
        else:
            rels = {
                c: parsed.get(c) for c in ("cpu", "cpuacct", "memory", "blkio", "pids")
            }

            def dir_of(controller: str) -> str:
                base, rel = self.mounts.get(controller), rels[controller]
                if not base or not rel:
                    return ""
                # The root cgroup is the mount itself (no trailing slash), so
                # that the check against _top() below sees it.
                rel = rel.strip("/")
                return os.path.join(base, rel) if rel else base

            paths = CgroupPaths(
                1,
                dir_of("cpu"),
                dir_of("cpuacct"),
                dir_of("memory"),
                dir_of("blkio"),
                dir_of("pids"),
            )
        if paths is None or not paths.exists() or paths.procs_dir == self._top():
            return None
        return paths

    def _top(self) -> str:
        """The hierarchy whose directories are looked for (that of ``procs_dir``)."""
        if self.version == 2:
            return self.unified
        return (self.mounts.get("pids") or self.mounts.get("memory")
                or self.mounts.get("cpu") or "")

    def locate(self, container_id: str, pid: int | None = None) -> CgroupPaths | None:
        """The cgroup directories of a container, or None if none is found."""
        cached = self._paths.get(container_id)
        if cached is not None:
            return cached
        found = self._from_pid(pid) if pid else None
        if found is None:
            rel = container_cgroup_at_known_path(self._top(), container_id)
            found = self._paths_for(rel) if rel is not None else None
        if found is None:
            last = self._missed.get(container_id)
            now = time.monotonic()
            if last is not None and now - last < self.rescan_interval:
                return None
            rel = container_cgroup_by_walk(self._top(), container_id, _WALK_DEPTH)
            if rel is None:
                self._missed[container_id] = now
                return None
            found = self._paths_for(rel)
        self._missed.pop(container_id, None)
        self._paths[container_id] = found
        return found

    def forget(self, container_id: str) -> None:
        """Drop what is cached about a container (it was destroyed)."""
        self._paths.pop(container_id, None)
        self._missed.pop(container_id, None)

    # -- reading

    def read(
        self, container_id: str, pid: int | None = None
    ) -> ContainerMetrics | None:
        """One reading of a container's metrics, or None if its cgroup is gone."""
        paths = self.locate(container_id, pid)
        if paths is None:
            return None
        if paths.version == 2:
            metrics = _read_v2(container_id, paths.memory)
        else:
            metrics = _read_v1(container_id, paths)
        if metrics is None:
            # Vanished (or restarted into a new cgroup): look it up afresh next time.
            self.forget(container_id)
        return metrics


def _read_v2(container_id: str, d: str) -> ContainerMetrics | None:
    cpu = parse_flat_keyed(_read(d + "/cpu.stat"))
    if "usage_usec" not in cpu:
        return None
    memory_stat = parse_flat_keyed(_read(d + "/memory.stat"))
    usage = _int(_read(d + "/memory.current")) or 0
    io = parse_io_stat(_read(d + "/io.stat"))
    return ContainerMetrics(
        container_id=container_id,
        cgroup_version=2,
        timestamp=time.monotonic(),
        cpu_usage_ns=cpu["usage_usec"] * 1000,
        cpu_limit_cores=parse_cpu_max(_read(d + "/cpu.max")),
        cpu_periods=cpu.get("nr_periods", 0),
        cpu_throttled_periods=cpu.get("nr_throttled", 0),
        cpu_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - memory_stat.get("inactive_file", 0)),
        memory_limit_bytes=parse_limit(_read(d + "/memory.max")),
        memory_oom_kills=parse_flat_keyed(_read(d + "/memory.events")).get(
            "oom_kill", 0
        ),
        io_read_bytes=io["rbytes"],
        io_write_bytes=io["wbytes"],
        io_read_ops=io["rios"],
        io_write_ops=io["wios"],
        pids=_int(_read(d + "/pids.current")) or 0,
        pids_limit=parse_limit(_read(d + "/pids.max")),
    )


def _read_v1(container_id: str, p: CgroupPaths) -> ContainerMetrics | None:
    usage_ns = _int(_read(p.cpuacct + "/cpuacct.usage")) if p.cpuacct else None
    memory_usage = (
        _int(_read(p.memory + "/memory.usage_in_bytes")) if p.memory else None
    )
    if usage_ns is None and memory_usage is None:
        return None
    cpu = parse_flat_keyed(_read(p.cpu + "/cpu.stat")) if p.cpu else {}
    limit = None
    if p.cpu:
        limit = cfs_quota_cores(
            _read(p.cpu + "/cpu.cfs_quota_us"), _read(p.cpu + "/cpu.cfs_period_us")
        )
    memory_stat: dict[str, int] = {}
    memory_limit = None
    oom = {}
    if p.memory:
        memory_stat = parse_flat_keyed(_read(p.memory + "/memory.stat"))
        memory_limit = parse_limit(_read(p.memory + "/memory.limit_in_bytes"))
        oom = parse_flat_keyed(_read(p.memory + "/memory.oom_control"))
    inactive = memory_stat.get(
        "total_inactive_file", memory_stat.get("inactive_file", 0)
    )
    read_bytes = write_bytes = read_ops = write_ops = 0
    if p.blkio:
        read_bytes, write_bytes = parse_blkio(
            _read(p.blkio + "/blkio.throttle.io_service_bytes_recursive")
        )
        read_ops, write_ops = parse_blkio(
            _read(p.blkio + "/blkio.throttle.io_serviced_recursive")
        )
    pids = pids_limit = None
    if p.pids:
        pids = _int(_read(p.pids + "/pids.current"))
        pids_limit = parse_limit(_read(p.pids + "/pids.max"))
    usage = memory_usage or 0
    return ContainerMetrics(
        container_id=container_id,
        cgroup_version=1,
        timestamp=time.monotonic(),
        cpu_usage_ns=usage_ns or 0,
        cpu_limit_cores=limit,
        cpu_periods=cpu.get("nr_periods", 0),
        cpu_throttled_periods=cpu.get("nr_throttled", 0),
        cpu_throttled_ns=cpu.get("throttled_time", 0),
        memory_usage_bytes=usage,
        memory_working_set_bytes=max(0, usage - inactive),
        memory_limit_bytes=memory_limit,
        memory_oom_kills=oom.get("oom_kill", 0),
        io_read_bytes=read_bytes,
        io_write_bytes=write_bytes,
        io_read_ops=read_ops,
        io_write_ops=write_ops,
        pids=pids or 0,
        pids_limit=pids_limit,
    )


def read_container_metrics(
    container_id: str,
    root: str | os.PathLike = "/sys/fs/cgroup",
    pid: int | None = None,
    proc: str | os.PathLike = "/proc",
) -> ContainerMetrics | None:
    """One-off reading (no cache); use a :class:`CgroupMetricsReader` in a loop."""
    return CgroupMetricsReader(root, proc).read(container_id, pid)
