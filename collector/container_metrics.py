"""Per-interval container metrics and services, from cgroups and /proc.

Turns cumulative cgroup and network counters into the rates the map shows
(cores, bytes/s, throttled share), keeps the last metrics of a container that
has exited (its cgroup is gone, but its OOM kill and memory stay visible), and
refreshes each container's services (processes and listening ports) every few
intervals, since that walks /proc.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from collector.cgroup_metrics import CgroupMetricsReader, ContainerMetrics, cpu_cores
from collector.netns_metrics import read_net_dev, total
from collector.services import ListeningCache, services_for_container

log = logging.getLogger("portolan.collector.metrics")


def _rate(prev: int | None, cur: int, dt: float) -> float | None:
    if prev is None or dt <= 0 or cur < prev:
        return None
    return round((cur - prev) / dt, 3)


def derive_metrics(
    prev: ContainerMetrics | None,
    cur: ContainerMetrics,
    net_prev: tuple[int, int] | None,
    net_cur: tuple[int, int] | None,
) -> dict:
    """The map's metrics for one container from two cumulative readings.

    >>> a = ContainerMetrics("c", 1, 0.0, cpu_usage_ns=0, cpu_periods=10)
    >>> b = ContainerMetrics("c", 1, 2.0, cpu_usage_ns=10**9, cpu_periods=30,
    ...                      cpu_throttled_periods=5, cpu_limit_cores=1.0)
    >>> m = derive_metrics(a, b, (0, 0), (4000, 2000))
    >>> m["cpu_cores"], m["cpu_percent_of_limit"], m["cpu_throttled_ratio"]
    (0.5, 50.0, 0.25)
    >>> m["net_rx_bytes_per_s"], m["net_tx_bytes_per_s"]
    (2000.0, 1000.0)
    """
    dt = cur.timestamp - prev.timestamp if prev else 0.0
    cores = round(cpu_cores(prev, cur, dt), 4) if prev and dt > 0 else None
    throttled = None
    if prev is not None and cur.cpu_periods > prev.cpu_periods:
        throttled = round(
            (cur.cpu_throttled_periods - prev.cpu_throttled_periods)
            / (cur.cpu_periods - prev.cpu_periods), 4)
    percent = None
    if cores is not None and cur.cpu_limit_cores:
        percent = round(100 * cores / cur.cpu_limit_cores, 2)
    metrics = {
        "cgroup_version": cur.cgroup_version,
        "cpu_cores": cores,
        "cpu_limit_cores": cur.cpu_limit_cores,
        "cpu_percent_of_limit": percent,
        "cpu_throttled_ratio": throttled,
        "cpu_throttled_periods": cur.cpu_throttled_periods,
        "cpu_throttled_ns": cur.cpu_throttled_ns,
        "memory_usage_bytes": cur.memory_usage_bytes,
        "memory_working_set_bytes": cur.memory_working_set_bytes,
        "memory_limit_bytes": cur.memory_limit_bytes,
        "memory_oom_kills": cur.memory_oom_kills,
        "io_read_bytes": cur.io_read_bytes,
        "io_write_bytes": cur.io_write_bytes,
        "io_read_ops": cur.io_read_ops,
        "io_write_ops": cur.io_write_ops,
        "io_read_bytes_per_s": _rate(
            prev.io_read_bytes if prev else None, cur.io_read_bytes, dt),
        "io_write_bytes_per_s": _rate(
            prev.io_write_bytes if prev else None, cur.io_write_bytes, dt),
        "pids": cur.pids,
        "pids_limit": cur.pids_limit,
    }
    if net_cur is not None:
        metrics["net_rx_bytes"], metrics["net_tx_bytes"] = net_cur
        if net_prev is not None:
            metrics["net_rx_bytes_per_s"] = _rate(net_prev[0], net_cur[0], dt)
            metrics["net_tx_bytes_per_s"] = _rate(net_prev[1], net_cur[1], dt)
    return metrics


@dataclass(slots=True)
class _Last:
    reading: ContainerMetrics
    net: tuple[int, int] | None
    metrics: dict


class MetricsSampler:
    """Reads every running container once per call; remembers the last reading."""

    def __init__(self, cgroup_root: str = "/sys/fs/cgroup", proc: str = "/proc",
                 services_every: int = 5):
        self.reader = CgroupMetricsReader(cgroup_root, proc)
        self.proc = proc
        self.services_every = max(1, services_every)
        self._last: dict[str, _Last] = {}
        self._services: dict[str, list[dict]] = {}
        self._listening = ListeningCache()
        self._calls = 0

    def sample(self, containers: dict[str, dict]) -> dict[str, dict]:
        """Container id -> metrics, for ``containers`` (id -> Docker details)."""
        self._calls += 1
        refresh_services = (self._calls - 1) % self.services_every == 0
        out = {}
        for cid, details in containers.items():
            pid = details.get("pid") or None
            if details.get("state") == "running":
                reading = self.reader.read(cid, pid)
                if reading is not None:
                    net = None
                    if pid:
                        interfaces = read_net_dev(pid, self.proc)
                        if interfaces is not None:
                            t = total(interfaces)
                            net = (t.rx_bytes, t.tx_bytes)
                    last = self._last.get(cid)
                    metrics = derive_metrics(
                        last.reading if last else None, reading,
                        last.net if last else None, net,
                    )
                    self._last[cid] = _Last(reading, net, metrics)
                    if refresh_services or cid not in self._services:
                        self._services[cid] = self._read_services(cid, pid)
            last = self._last.get(cid)
            metrics = dict(last.metrics) if last else {}
            metrics["restart_count"] = details.get("restart_count", 0)
            metrics["health"] = details.get("health") or None
            # Docker's own word that the last stop was an OOM kill: the rules
            # show it even when the kill came before anyone watched.
            metrics["oom_killed"] = bool(details.get("oom_killed"))
            metrics["memory_oom_kills"] = max(
                metrics.get("memory_oom_kills") or 0,
                details.get("oom_kills") or 0,
                1 if details.get("oom_killed") else 0,
            )
            out[cid] = metrics
        for gone in set(self._last) - set(containers):
            del self._last[gone]
            self._services.pop(gone, None)
            self.reader.forget(gone)
        return out

    def services(self, cid: str) -> list[dict]:
        return self._services.get(cid, [])

    def _read_services(self, cid: str, pid: int | None) -> list[dict]:
        paths = self.reader.locate(cid, pid)
        if paths is None:
            return []
        try:
            return [s.to_dict() for s in services_for_container(
                paths.procs_dir, self.proc, self._listening)]
        except OSError as exc:
            log.debug("services of %s: %s", cid[:12], exc)
            return []


def disk_used_ratio(paths=("/",)) -> float | None:
    """The fullest of the given filesystems, as used / size."""
    worst = None
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        if st.f_blocks:
            used = 1 - st.f_bavail / st.f_blocks
            worst = used if worst is None else max(worst, used)
    return None if worst is None else round(worst, 4)
