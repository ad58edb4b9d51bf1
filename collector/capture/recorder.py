"""Turns what collectors wrote into Redis into capture records.

Live: each change notice (``P:changes``) of a host is answered by one atomic
read of its keys; the record carries what the flows grew by since the
previous read, the rates and records as written, and which history tiers the
report snapshotted, so a replay writes the same history at the same times.
Past: a window of the history tiers, one record per snapshot.

The first record of each host also carries the counters it had before
(``Report.base``): a replay then reaches the same totals. What a record adds
(live), or what the window's snapshots took off today's totals (past), is
followed per field of the live flows hash as written: a field's canonical
name can change between reads (a short container id that no longer resolves
once its container is gone), its counter does not.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import redis

from collector.capture.format import HISTORY_TIERS, Event, Report
from collector.flow_fields import canonical_flow_fields, host_flow_fields
from collector.history_format import (
    decode_history,
    decode_keyframe,
    decode_keyframes,
    keyframe_of,
    totals_since_keyframe,
)
from collector.schema import (
    ContainerRecord,
    HostRecord,
    Keys,
    SchemaError,
    container_from_keys,
    container_node_id,
    host_node_id,
    parse_address_target,
    parse_flow_field,
    validate_host_id,
)

__all__ = [
    "ContainerFilter",
    "HostHistoryRead",
    "HostKeysRead",
    "HostReader",
    "history_records",
    "history_reports",
    "record_live",
]

log = logging.getLogger("portolan.capture.recorder")


@dataclass(slots=True)
class ContainerFilter:
    """Which containers a capture keeps: by name (glob) or ``label=value``;
    empty keeps all. With a pattern, the flows kept are the kept containers'
    own and those of anything else (a host process) towards one of them."""

    patterns: list[str] = field(default_factory=list)

    def keeps(self, record: ContainerRecord) -> bool:
        if not self.patterns:
            return True
        for pattern in self.patterns:
            label, sep, value = pattern.partition("=")
            if sep and record.labels.get(label) == value:
                return True
            if not sep and fnmatch.fnmatchcase(record.name, pattern):
                return True
        return False

    def apply(self, report: Report) -> Report:
        """The report with only the kept containers and their flows."""
        if not self.patterns:
            return report
        host = report.host.id
        kept = [c for c in report.containers if self.keeps(c)]
        dropped = {container_node_id(host, c.id) for c in report.containers
                   if not self.keeps(c)}
        kept_ips = {ip for c in kept for ip in c.ips}

        def keep_field(name: str) -> bool:
            # A kept container's own flows, and whatever else talks to one.
            key, _ = parse_flow_field(name)
            if key.node in kept_nodes:
                return True
            return key.ip in kept_ips and key.node not in dropped

        report.containers = kept
        kept_nodes = {container_node_id(host, c.id) for c in kept}
        report.flows = {f: v for f, v in report.flows.items() if keep_field(f)}
        report.rates = {f: v for f, v in report.rates.items() if keep_field(f)}
        report.base = {f: v for f, v in report.base.items() if keep_field(f)}
        talking = {parse_flow_field(f)[0].node for f in report.base} | {
            parse_flow_field(f)[0].node for f in report.flows}
        report.host.processes = [p for p in report.host.processes
                                 if isinstance(p, dict) and p.get("node") in talking]
        # Addresses of what is kept: its containers, the host, the processes
        # that talk to them (not a container gone or left out).
        wanted = kept_nodes | talking | {host_node_id(host)}
        report.addrs = {a: t for a, t in report.addrs.items()
                        if parse_address_target(t)[0] in wanted}
        return report


def _decode_map(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


@dataclass(slots=True)
class _HostProgress:
    """What a capture has written of one host so far."""

    # live flows hash field (as the collector wrote it) -> the total the
    # records add up to
    emitted: dict[str, int]
    last_ts: float
    # tier -> unix time of its latest snapshot seen, and what the records
    # added since (the counts the next snapshot of that tier must hold)
    snapshot_ts: dict[str, float]
    since_snapshot: dict[str, Counter] = field(default_factory=dict)


class HostKeysRead(NamedTuple):
    """One atomic read of a host's keys, as Redis answers it."""

    host: bytes | None
    containers: dict[bytes, bytes]
    addrs: dict[bytes, bytes]
    flows: dict[bytes, bytes]
    rates: dict[bytes, bytes]
    ids: dict[bytes, bytes]
    tiers: list  # per HISTORY_TIERS: (snapshot blob, time) rows
    # container id -> its metrics (P:metrics); none from a collector before it
    metrics: dict[bytes, bytes] = {}  # noqa: RUF012 - read, never mutated


def _grown(totals: dict[str, int], emitted: dict[str, int]) -> dict[str, int]:
    """What the totals added since ``emitted``; a counter that went down or
    left was reset (its hash expired): its ``emitted`` restarts from 0.

    >>> emitted = {"a": 5, "b": 9, "gone": 4}
    >>> _grown({"a": 7, "b": 3, "new": 1}, emitted), emitted
    ({'a': 2, 'b': 3, 'new': 1}, {'a': 5, 'b': 0})
    """
    for f in [f for f in emitted if totals.get(f, 0) < emitted[f]]:
        if f in totals:
            emitted[f] = 0
        else:
            del emitted[f]
    return {f: v - emitted.get(f, 0) for f, v in totals.items()
            if v > emitted.get(f, 0)}


class _Growth:
    """What a host's live flow fields grew by since the records before,
    handed out to this read's records by canonical field; taking advances
    what the records add up to (``emitted``) on the live fields."""

    def __init__(self, grown: dict[str, int], canonical: dict[str, str],
                 emitted: dict[str, int]):
        self.left = grown
        self.canonical = canonical
        self.emitted = emitted

    def take(self, wanted: dict[str, int] | None = None) -> dict[str, int]:
        """Up to ``wanted`` (canonical field -> count; None: all that is
        left), as canonical fields."""
        out: dict[str, int] = {}
        for f, v in self.left.items():
            name = self.canonical.get(f)
            if name is None or v <= 0:
                continue
            n = v if wanted is None else min(v, wanted.get(name, 0)
                                             - out.get(name, 0))
            if n > 0:
                self.left[f] -= n
                self.emitted[f] = self.emitted.get(f, 0) + n
                out[name] = out.get(name, 0) + n
        return out


def _canonical_names(fields, names) -> dict[str, str]:
    """Live flow field -> its canonical field (one that does not parse is
    left out: not a counter a replay could write)."""
    out = {}
    for name in names:
        try:
            out[name] = fields.canonical(name)
        except SchemaError as exc:
            log.warning("host %s: skipping flow field: %s", fields.host_id, exc)
    return out


class HostReader:
    """Reads hosts' keys after their reports and makes records of them.

    A read may come late, after the host's next report: the records then
    follow the history snapshots the collector wrote meanwhile (their time,
    records, rates and counts), so a replay writes the same history at the
    same times, and what was counted after the last snapshot goes into the
    next record.
    """

    def __init__(self, client: redis.Redis, keys: Keys,
                 containers: ContainerFilter | None = None):
        self.client = client
        self.keys = keys
        self.filter = containers or ContainerFilter()
        self.hosts: dict[str, _HostProgress] = {}
        # host id -> the keyframes read (by time, decoded), the latest few:
        # what its new snapshots are stored against.
        self.frames: dict[str, dict[float, dict]] = {}

    def read(self, host_id: str, ts: float) -> list[Report]:
        """The records of the host's reports up to the one at ``ts`` that were
        not read yet (none when its keys hold nothing newer)."""
        k = self.keys
        progress = self.hosts.get(host_id)
        # One transaction: the host's keys share a slot, and the collector
        # writes them in one transaction too, so this sees whole reports.
        pipe = self.client.pipeline(transaction=True)
        pipe.get(k.host(host_id))
        pipe.hgetall(k.containers(host_id))
        pipe.hgetall(k.addrs(host_id))
        pipe.hgetall(k.flows(host_id))
        pipe.hgetall(k.rates(host_id))
        pipe.hgetall(k.ids(host_id))
        pipe.hgetall(k.container_metrics(host_id))
        for tier in HISTORY_TIERS:
            if progress is None:
                pipe.zrange(k.history(host_id, tier), -1, -1, withscores=True)
            else:
                pipe.zrangebyscore(k.history(host_id, tier),
                                   f"({progress.snapshot_ts[tier]!r}", "+inf",
                                   withscores=True)
        raw_host, containers, addrs, flows, rates, ids, metrics, *tiers = \
            pipe.execute()
        return self.records(host_id, ts, HostKeysRead(
            raw_host, containers, addrs, flows, rates, ids, tiers, metrics))

    def records(self, host_id: str, ts: float, read: HostKeysRead) -> list[Report]:
        """The records of one read of the host's keys (no I/O): ``read``'s
        reports not recorded yet, as ``read`` describes."""
        if read.host is None:
            return []
        progress = self.hosts.get(host_id)
        # Captures keep canonical flow fields, as history does.
        cids = [c.decode() for c in read.containers]
        fields = host_flow_fields(host_id, cids, read.ids)
        totals = {f.decode(): int(v) for f, v in read.flows.items()}
        canonical = _canonical_names(fields, totals)
        live = Report(
            ts=ts, host=HostRecord.from_json(read.host),
            containers=[container_from_keys(v, read.metrics.get(c))
                        for c, v in read.containers.items()],
            addrs=_decode_map(read.addrs),
            rates=canonical_flow_fields(host_id, cids, read.rates, float, read.ids),
        )
        if progress is None:
            # The host's first report: what it had counted so far is the base;
            # this step's share of it is unknown, so no history step is kept
            # (the next one starts with what the capture saw).
            self.hosts[host_id] = progress = _HostProgress(
                emitted={}, last_ts=ts,
                snapshot_ts={t: rows[0][1] if rows else 0.0
                             for t, rows in zip(HISTORY_TIERS, read.tiers,
                                                strict=True)},
                since_snapshot={t: Counter() for t in HISTORY_TIERS})
            live.base = _Growth(totals, canonical, progress.emitted).take()
            self._keep_frames(host_id, read.tiers)
            return [self.filter.apply(live)]
        growth = _Growth(_grown(totals, progress.emitted), canonical,
                         progress.emitted)
        records = []
        frames = self._keep_frames(host_id, read.tiers)
        for snap_ts, marks, snapshot in _snapshots(read.tiers, frames):
            records.append(self._from_snapshot(
                host_id, progress, snap_ts, marks, snapshot, growth))
        if ts > progress.last_ts:
            live.flows = growth.take()
            records.append(self._advance(progress, live, ()))
        return [self.filter.apply(r) for r in records]

    def _from_snapshot(self, host_id: str, progress: _HostProgress, ts: float,
                       marks: tuple[str, ...], snapshot: dict,
                       growth: _Growth) -> Report:
        """The record of a report that wrote history: its snapshot's records
        and rates, and what makes the tier's step hold the snapshot's counts
        (never more than the totals grew by: the first step of a capture
        began before it)."""
        counts = Counter({f: int(v) for f, v in (snapshot.get("counts") or {}
                                                 ).items()})
        owed = counts.copy()
        owed.subtract(progress.since_snapshot[marks[0]])
        report = Report(
            ts=ts, host=HostRecord.from_json(json.dumps(
                snapshot.get("host") or {"id": host_id})),
            containers=[ContainerRecord.from_json(json.dumps(c))
                        for c in snapshot.get("containers") or []],
            addrs={str(a): str(t) for a, t in (snapshot.get("addrs") or {}
                                                ).items()},
            rates={f: float(v) for f, v in (snapshot.get("rates") or {}).items()},
            flows=growth.take({f: v for f, v in owed.items() if v > 0}))
        return self._advance(progress, report, marks)

    def _keep_frames(self, host_id: str, tiers) -> dict[float, dict]:
        """The host's keyframes read so far, with the ones in ``tiers``."""
        frames = self.frames.setdefault(host_id, {})
        frames.update(decode_keyframes(tiers[HISTORY_TIERS.index("totals")],
                                       host_id))
        for ts in sorted(frames)[:-3]:
            del frames[ts]
        return frames

    @staticmethod
    def _advance(progress: _HostProgress, report: Report,
                 marks: tuple[str, ...]) -> Report:
        report.interval = max(0.001, report.ts - progress.last_ts)
        report.history = marks
        for tier, counted in progress.since_snapshot.items():
            if tier in marks:
                progress.since_snapshot[tier] = Counter()
                progress.snapshot_ts[tier] = report.ts
            else:
                counted.update(report.flows)
        progress.last_ts = max(progress.last_ts, report.ts)
        return report


def _snapshots(tiers, frames: dict[float, dict] | None = None
               ) -> list[tuple[float, tuple[str, ...], dict]]:
    """New history snapshots by time: (time, tiers that hold one, the finest);
    ``frames``: the keyframes they may be stored against, by time."""
    by_ts: dict[float, dict[str, bytes]] = {}
    for tier, rows in zip(HISTORY_TIERS, tiers, strict=True):
        for blob, score in rows:
            by_ts.setdefault(score, {})[tier] = blob
    out = []
    for ts in sorted(by_ts):
        blobs = by_ts[ts]
        marks = tuple(t for t in HISTORY_TIERS if t in blobs)
        if marks[0] == "totals":
            continue  # a keyframe goes with a coarse snapshot: never alone
        try:
            blob = blobs[marks[0]]
            frame = (frames or {}).get(keyframe_of(blob))
            out.append((ts, marks, decode_history(blob, frame)))
        except SchemaError as exc:
            log.warning("history snapshot at %s: %s", ts, exc)
    return out


def record_live(
    client: redis.Redis, keys: Keys, write: Callable[[Report | Event], None],
    hosts: set[str] | None = None, containers: ContainerFilter | None = None,
    duration: float | None = None, should_stop: Callable[[], bool] = lambda: False,
    until: float | None = None, flush: Callable[[], None] | None = None,
    flush_every: float = 5.0,
) -> int:
    """Follow the change notices and write a record per report (and the
    analyzer's events) until ``duration`` or ``until`` passes or
    ``should_stop()``; returns the records written."""
    reader = HostReader(client, keys, containers)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.changes)
    events_key = keys.anomaly("events")
    last_event = f"{int(time.time() * 1000)}-0"
    end = min(time.time() + duration if duration else float("inf"),
              until if until else float("inf"))
    written = 0
    next_flush = time.monotonic() + flush_every
    try:
        while not should_stop() and time.time() < end:
            message = pubsub.get_message(timeout=0.2)
            if message is not None:
                try:
                    notice = json.loads(message["data"])
                    host_id = validate_host_id(notice["host"])
                    ts = float(notice["ts"])
                except (ValueError, KeyError, TypeError, SchemaError) as exc:
                    log.warning("skipping change notice: %s", exc)
                    continue
                if hosts and host_id not in hosts:
                    continue
                for report in reader.read(host_id, ts):
                    write(report)
                    written += 1
            for stream_id, fields in client.xrange(events_key, f"({last_event}",
                                                   "+", count=1000):
                last_event = stream_id.decode()
                event = _event(fields)
                if event is not None:
                    write(event)
                    written += 1
            if flush and time.monotonic() >= next_flush:
                flush()
                next_flush = time.monotonic() + flush_every
    finally:
        pubsub.close()
    return written


def _event(fields: dict[bytes, bytes]) -> Event | None:
    data = _decode_map(fields)
    try:
        return Event(float(data.get("ts", "")), data)
    except ValueError:
        return None


def history_records(
    client: redis.Redis, keys: Keys, since: float, until: float,
    hosts: set[str] | None = None, containers: ContainerFilter | None = None,
) -> list[Report | Event]:
    """The records of a past window, from the history tiers (fine where it
    reaches back to ``since``, else coarse), with the analyzer's events."""
    filt = containers or ContainerFilter()
    records: list[Report | Event] = []
    known = [m.decode() for m in client.zrange(keys.collectors, 0, -1)]
    for host_id in sorted(h for h in known if not hosts or h in hosts):
        try:
            validate_host_id(host_id)
        except SchemaError:
            continue
        records.extend(filt.apply(r) for r in _host_history(client, keys, host_id,
                                                             since, until))
    for _id, fields in client.xrange(keys.anomaly("events"),
                                     str(int(since * 1000)),
                                     str(int(until * 1000))):
        event = _event(fields)
        if event is not None:
            records.append(event)
    records.sort(key=lambda r: r.ts)
    return records


def _host_history(client: redis.Redis, keys: Keys, host_id: str, since: float,
                  until: float) -> list[Report]:
    fine_key = keys.history(host_id, "fine")
    oldest_fine = client.zrange(fine_key, 0, 0, withscores=True)
    tier = "fine" if oldest_fine and oldest_fine[0][1] <= since else "coarse"
    # Everything from the window's start on: the counts after the window
    # come off today's totals to give the totals when it began.
    rows = client.zrangebyscore(keys.history(host_id, tier), since, "+inf",
                                withscores=True)
    coarse_times = ({s for _, s in client.zrangebyscore(
        keys.history(host_id, "coarse"), since, until, withscores=True)}
        if tier == "fine" else set())
    pipe = client.pipeline(transaction=False)
    pipe.hkeys(keys.containers(host_id))
    pipe.hgetall(keys.flows(host_id))
    pipe.hgetall(keys.ids(host_id))
    pipe.zrange(keys.history(host_id, "totals"), 0, -1, withscores=True)
    container_ids, flows, ids, frames = pipe.execute()
    totals = (_totals_at(client, keys, host_id, tier, rows[0][1],
                         oldest_fine[0][1] if oldest_fine else None)
              if rows else None)
    return history_reports(host_id, until, HostHistoryRead(
        tier, rows, coarse_times, container_ids, flows, ids, totals, frames))


def _totals_at(client: redis.Redis, keys: Keys, host_id: str, tier: str,
               at: float, oldest_fine: float | None) -> dict[str, int] | None:
    """The host's totals after its ``tier`` snapshot at ``at``: the keyframe
    at or before it plus the counts of the snapshots since (coarse ones up
    to the last coarse one, fine ones after), as the past view sums them;
    None without a keyframe, or where the fine snapshots needed are gone."""
    pipe = client.pipeline(transaction=False)
    pipe.zrevrangebyscore(keys.history(host_id, "totals"), at, "-inf",
                          start=0, num=1, withscores=True)
    pipe.zrevrangebyscore(keys.history(host_id, "coarse"), at, "-inf",
                          start=0, num=1, withscores=True)
    frame, last_coarse = pipe.execute()
    if not frame:
        return None
    frame_blob, frame_ts = frame[0]
    coarse_ts = max(last_coarse[0][1], frame_ts) if last_coarse else frame_ts
    if tier == "fine" and (oldest_fine is None or oldest_fine > coarse_ts):
        return None
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(keys.history(host_id, "coarse"), f"({frame_ts}",
                       min(coarse_ts, at))
    if tier == "fine":
        pipe.zrangebyscore(keys.history(host_id, "fine"), f"({coarse_ts}", at)
    try:
        totals = totals_since_keyframe(
            decode_keyframe(frame_blob),
            (blob for blobs in pipe.execute() for blob in blobs))
    except (SchemaError, ValueError, TypeError, AttributeError) as exc:
        log.warning("host %s history: keyframe unreadable (%s); the base "
                    "comes from today's totals", host_id, exc)
        return None
    return totals


class HostHistoryRead(NamedTuple):
    """What a past window's records of one host are made of, as Redis
    answers it."""

    tier: str  # the history tier the records follow
    rows: list  # its (snapshot blob, time) rows from the window's start on
    coarse_times: set[float]  # times in the window with a coarse snapshot too
    containers: list[bytes]  # the host's container ids now
    flows: dict[bytes, bytes]  # its live flows hash now
    ids: dict[bytes, bytes]  # its ids hash now (short -> whole container id)
    # The totals after the first row (from the keyframe before it); None: no
    # keyframe, the base comes from today's totals.
    totals_at_first: dict[str, int] | None = None
    # Its keyframes' (blob, time) rows: what format 2 snapshots are stored
    # against (collector.history_format).
    frames: list = []


def history_reports(host_id: str, until: float,
                    read: HostHistoryRead) -> list[Report]:
    """The records of a past window of one host, up to ``until`` (no I/O):
    one per snapshot, the first with what the host had counted before.

    That base is the totals after the first snapshot (``totals_at_first``,
    from the keyframe before it) less its counts. Without a keyframe it is
    today's totals less the snapshots' counts since the window began, taken
    per live flow field as written: the snapshots name a flow as the collector
    knew it then, today's canonical name of its field may differ (a short
    container id that no longer resolves once its container is gone); what
    was counted after the last snapshot then stays in it.
    """
    frames = decode_keyframes(read.frames, host_id)
    snapshots = []
    for blob, score in read.rows:
        try:
            snapshots.append((score, decode_history(
                blob, frames.get(keyframe_of(blob)))))
        except SchemaError as exc:
            log.warning("host %s history at %s: %s", host_id, score, exc)
    left = _live_totals(host_id, read.flows)
    reports = []
    previous = None
    for score, snap in snapshots:
        counts = {f: int(v) for f, v in (snap.get("counts") or {}).items()}
        containers = [ContainerRecord.from_json(json.dumps(c))
                      for c in snap.get("containers") or []]
        then = host_flow_fields(host_id, [c.id for c in containers], read.ids)
        for f, v in counts.items():
            live = _live_field(then, f, left)
            if live is not None:
                left[live] = left.get(live, 0) - v
        if score > until:
            continue
        history = (("fine", "coarse") if score in read.coarse_times
                   else (read.tier,))
        reports.append(Report(
            ts=score, host=HostRecord.from_json(json.dumps(snap.get("host") or {
                "id": host_id})),
            containers=containers,
            addrs={str(a): str(t) for a, t in (snap.get("addrs") or {}).items()},
            flows=counts,
            rates={f: float(v) for f, v in (snap.get("rates") or {}).items()},
            interval=max(0.001, score - previous) if previous else 1.0,
            history=history,
        ))
        previous = score
    if (reports and read.totals_at_first is not None
            and snapshots[0][0] == read.rows[0][1]):
        first_counts = {f: int(v) for f, v in
                        (snapshots[0][1].get("counts") or {}).items()}
        reports[0].base = {f: v - first_counts.get(f, 0)
                           for f, v in read.totals_at_first.items()
                           if v > first_counts.get(f, 0)}
    elif reports:
        # What the host had counted before the window's first snapshot, named
        # as that record's containers name it (else as today's do).
        first = host_flow_fields(host_id, [c.id for c in reports[0].containers],
                                 read.ids)
        now = host_flow_fields(host_id, [c.decode() for c in read.containers],
                               read.ids)
        reports[0].base = _canonical_totals(
            {f: v for f, v in left.items() if v > 0}, first, now)
    return reports


def _live_totals(host_id: str, flows: dict[bytes, bytes]) -> dict[str, int]:
    """A live flows hash as read: field as written -> its total."""
    out = {}
    for name, value in flows.items():
        try:
            out[name.decode()] = int(value)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("host %s: skipping flow field %r: %s", host_id, name, exc)
    return out


def _live_field(fields, canonical: str, totals: dict[str, int]) -> str | None:
    """The live field that holds a snapshot's canonical field, as ``fields``
    (the host's then) names it; the canonical field itself where a collector
    of the version before wrote that; None if it does not parse."""
    try:
        name = fields.name(*parse_flow_field(canonical))
    except SchemaError as exc:
        log.warning("host %s: skipping flow field: %s", fields.host_id, exc)
        return None
    return canonical if name not in totals and canonical in totals else name


def _canonical_totals(totals: dict[str, int], first, now) -> dict[str, int]:
    """Live field -> total as canonical field -> total, each named by
    ``first`` unless only ``now`` resolves its short container id."""
    bare = host_flow_fields(first.host_id, ())
    out: dict[str, int] = {}
    for live, v in totals.items():
        try:
            name = first.canonical(live)
            if name == bare.canonical(live):
                name = now.canonical(live)
        except SchemaError as exc:
            log.warning("host %s: skipping flow field: %s", first.host_id, exc)
            continue
        out[name] = out.get(name, 0) + v
    return out
