"""Writes capture records into Redis as their collectors did.

Each host gets the collector's own RedisReporter, so keys, transactions,
history tiers and change notices are exactly a collector's. Files merge by
time. A replayed host record says where it comes from (``HostRecord.replay``:
the file and the time the collector reported it), for the map to show.

A bad block ends its file's replay before any of its records is written
(``CaptureReader.blocks`` checks a whole block first); what came before it
stays, and the other files go on. The analyzer's events are not written:
``manage.py analyze`` judges the replayed data itself.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis

from collector.capture.format import (
    HISTORY_TIERS,
    CaptureError,
    CaptureReader,
    Report,
)
from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.schema import parse_flow_field

__all__ = ["ReplayStats", "Replayer"]

log = logging.getLogger("portolan.capture.replayer")


@dataclass(slots=True)
class ReplayStats:
    records: int = 0
    reports: int = 0
    passes: int = 0
    first: float = math.inf  # recorded times replayed
    last: float = -math.inf
    errors: list[CaptureError] = field(default_factory=list)


def _file_reports(index: int, path: Path, errors: list[CaptureError],
                  bad: set[Path]
                  ) -> Iterator[tuple[float, int, int, Report, Path]]:
    """A file's reports in order; a bad block ends them (and is recorded)."""
    try:
        with CaptureReader(path) as reader:
            n = 0
            for _, records in reader.blocks():
                for record in records:
                    if isinstance(record, Report):
                        n += 1
                        yield record.ts, index, n, record, path
    except CaptureError as exc:
        errors.append(exc)
        bad.add(path)
        log.error("%s", exc)


class Replayer:
    """Replays capture files through one RedisReporter per host.

    ``speed``: recorded seconds per wall-clock second (None: as fast as Redis
    takes them). Paced, reports are written at the wall-clock time they fall
    on, so the map is live; fast, at their recorded times (``keep_times``) or
    shifted so that the capture ends now.
    """

    def __init__(self, client: redis.Redis, keys, node_ttl: float = 30.0,
                 flow_ttl: float = 300.0, history: HistoryPolicy | None = None,
                 speed: float | None = 1.0, keep_times: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time):
        self.client = client
        self.keys = keys
        self.node_ttl, self.flow_ttl = node_ttl, flow_ttl
        self.history = history or HistoryPolicy()
        self.speed = speed
        self.keep_times = keep_times
        self.sleep, self.clock = sleep, clock
        self.reporters: dict[str, RedisReporter] = {}
        self._fast_offset: float | None = None
        self._started: set[str] = set()  # hosts written in this pass

    def _reporter(self, host_id: str) -> RedisReporter:
        if host_id not in self.reporters:
            self.reporters[host_id] = RedisReporter(
                self.client, self.keys, node_ttl=self.node_ttl,
                flow_ttl=self.flow_ttl, history=self.history)
        return self.reporters[host_id]

    def replay(self, paths, loop: bool = False,
               should_stop: Callable[[], bool] = lambda: False) -> ReplayStats:
        """Replay the files once (or until stopped, with ``loop``)."""
        stats = ReplayStats()
        paths = [Path(p) for p in paths]
        bad: set[Path] = set()
        shift = 0.0  # seconds added to recorded times by earlier passes
        while not should_stop():
            live = [p for p in paths if p not in bad]
            if not live:
                break
            span = self._replay_pass(live, stats, bad, shift, should_stop)
            stats.passes += 1
            if not loop or span is None:
                break
            shift += span
        return stats

    def _replay_pass(self, paths: list[Path], stats: ReplayStats, bad: set[Path],
                     shift: float, should_stop) -> float | None:
        """One pass over the files; returns the span it covered (None: empty)."""
        self._started.clear()
        merged = heapq.merge(*(_file_reports(i, p, stats.errors, bad)
                               for i, p in enumerate(paths)))
        first_pass = stats.passes == 0
        wall0 = self.clock()
        start = end = None
        offset = 0.0
        for ts, _, _, report, path in merged:
            if should_stop():
                break
            if start is None:
                start = ts
                if self.speed:
                    offset = wall0 - ts
                elif not self.keep_times:
                    if self._fast_offset is None:
                        self._fast_offset = wall0 - self._last_time(paths)
                    offset = self._fast_offset + shift
                else:
                    offset = shift
            if self.speed:
                due = wall0 + (ts - start) / self.speed
                delay = due - self.clock()
                while delay > 0 and not should_stop():
                    self.sleep(min(delay, 0.2))  # Ctrl-C answered within 0.2 s
                    delay = due - self.clock()
                now = due
            else:
                now = ts + offset
            self._write(report, path, now, first_pass)
            stats.reports += 1
            stats.records += 1
            stats.first, stats.last = min(stats.first, ts), max(stats.last, ts)
            end = ts
        if start is None:
            return None
        # The next pass follows on after one more interval.
        return (end - start) + 1.0

    def _last_time(self, paths: list[Path]) -> float:
        last = -math.inf
        for path in paths:
            try:
                with CaptureReader(path) as reader:
                    for info in reader.block_infos():
                        last = max(last, info.last)
            except CaptureError:
                continue  # its blocks are reported when replayed
        return last if last > -math.inf else self.clock()

    def _write(self, report: Report, path: Path, now: float,
               first_pass: bool) -> None:
        reporter = self._reporter(report.host.id)
        flows: Counter = Counter()
        for name, delta in report.flows.items():
            flows[parse_flow_field(name)] += delta
        if first_pass and report.base:
            # Counted before the capture began: into the totals with this
            # write, not into this step's history counts or rates.
            for name, total in report.base.items():
                reporter.pending[parse_flow_field(name)] += total
        # The history snapshots (and keyframes of the totals) fall where the
        # collector's did; a host's first report of a pass writes all three,
        # so that its past totals start from a keyframe.
        marks = report.history
        if report.host.id not in self._started:
            self._started.add(report.host.id)
            marks = HISTORY_TIERS
        reporter.set_next_history(marks)
        host = replace(report.host, replay={
            "file": path.name, "recorded_at": report.ts,
            "offset": round(now - report.ts, 3)})
        ok = reporter.report(HostReport(
            host=host, containers=report.containers, addrs=report.addrs,
            flows=flows, interval=report.interval, rates=report.rates), now=now)
        if not ok:
            log.warning("Redis did not take the report of %s at %s; the "
                        "reporter keeps it for the next write", report.host.id,
                        report.ts)
