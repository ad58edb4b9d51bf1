"""Writes one host's view into Redis, and keeps it while Redis is away.

Counters are only ever added with HINCRBY inside one MULTI/EXEC, so several
collectors (and several writes of one collector) never lose an update. Deltas
that could not be written stay pending and are added to the next attempt, so a
Redis outage loses no count: it only delays it.

Each batch carries an id that the same transaction swaps into the host's
``applied`` key (GETSET), so every write also says which batch Redis held
before it. The reporter keeps the batches it sent for ``confirm_after``
seconds; when that answer (or, after a write that got no answer, a read of the
key) shows that a sent batch is not in Redis, the batch is added again:

- a write that failed without an answer and did not land is re-sent, and one
  that landed is not, so a lost reply never adds a batch twice;
- a write that Redis acknowledged and then lost, because its master died
  before a replica copied it and the replica took over (a Redis Cluster or
  Sentinel failover), is re-sent, so a failover loses no count either.

What cannot be re-sent, batches acknowledged more than ``confirm_after``
seconds before Redis lost them (a failover to a replica far behind, a restart
without persistence), is reported as lost: logged, and summed in
``RedisReporter.lost_counts``, never dropped in silence.

The host's keys share one Redis Cluster slot (see ``collector.schema``); the
collectors index and the change notice are written after the transaction.

History: every ``history_step`` seconds the host's records, the counts of the
step and the latest rates go into a fine-grained sorted set (kept
``history_fine`` seconds), and every ``history_coarse_step`` seconds into a
coarse one (kept ``history_window`` seconds): full resolution for the recent
past, downsampled after. A coarse snapshot is always written with a fine one,
so the two tiers' steps line up. Every ``keyframe`` seconds, with a coarse
snapshot, the host's totals (every flow counter as Redis holds it) go into a
third set: the totals at any past snapshot are the keyframe before it plus the
counts since, so a past view shows the totals the live map showed, including
edges quiet in that step, without storing every total in every snapshot. The
reporter keeps those totals itself (read from Redis when it starts, and again
after Redis lost them), adding each batch it writes. The keyframe holds the
host's records too, and the snapshots after it are stored against it
(``collector.history_format``): only what differs from it, so a quiet host's
snapshot is its counts and little else. A snapshot stands alone where no
keyframe is known to be in Redis (after a lost write, until the next one).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

import redis

from collector.flow_fields import HostFlowFields, host_flow_fields
from collector.history_format import encode_history, encode_keyframe, outgrows
from collector.redis_client import REDIS_ERRORS
from collector.redis_client import redis_client as make_client
from collector.schema import (
    RATE_COUNTERS,
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    SchemaError,
    make_flow_field,
)

log = logging.getLogger("portolan.collector.reporter")


def redis_client(url: str) -> redis.Redis:
    """A client (one Redis or a cluster) that fails fast: the collector must
    keep aggregating meanwhile.

    No automatic retries: a blind re-send of a transaction whose answer was lost
    could add its counters twice; RedisReporter retries with batch ids instead.
    """
    return make_client(url, retries=0, socket_connect_timeout=1.0,
                       socket_timeout=2.0, health_check_interval=10)


@dataclass(slots=True)
class HostReport:
    """Everything one collector says about its host in one interval."""

    host: HostRecord
    containers: list[ContainerRecord] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)  # address -> target
    flows: Counter = field(default_factory=Counter)  # (FlowKey, counter) -> delta
    interval: float = 1.0  # seconds the flows were counted over
    # The rates to write; None: from flows over interval. A replay passes the
    # rates the collector wrote, to write them again exactly.
    rates: dict[str, float] | None = None


@dataclass(slots=True)
class HistoryPolicy:
    step: float = 5.0
    fine: float = 900.0
    coarse_step: float = 60.0
    window: float = 3600.0
    keyframe: float = 600.0  # totals with a coarse snapshot this often


def flow_rates(flows: Counter, interval: float) -> dict[str, float]:
    """Flow field -> per-second rate, for the counters that have rates."""
    interval = max(interval, 1e-3)
    return {
        make_flow_field(key, counter): round(delta / interval, 3)
        for (key, counter), delta in flows.items()
        if delta and counter in RATE_COUNTERS
    }


@dataclass(slots=True)
class HistoryTier:
    """One history sorted set (``name`` "fine" or "coarse"): a snapshot every
    ``step`` seconds, kept ``keep`` seconds, carrying the counts since the
    previous one."""

    name: str
    step: float
    keep: float
    counts: Counter = field(default_factory=Counter)
    next_at: float = 0.0
    last_at: float | None = None  # the time of its latest snapshot


@dataclass(slots=True)
class SentBatch:
    """A write sent to Redis and kept until Redis surely holds it: what it
    carried, to send again if it turns out not to be there. ``snapshots``:
    tier name -> the counts of the history snapshot it wrote there;
    ``answered``: Redis acknowledged it (else its reply was lost);
    ``keyframe``: it wrote the host's totals too."""

    host_id: str
    batch_id: str
    batch: Counter
    snapshots: dict[str, Counter] = field(default_factory=dict)
    keyframe: bool = False
    sent_at: float = 0.0  # time.monotonic()
    answered: bool = False

    def size(self) -> int:
        return sum(self.batch.values())


class RedisReporter:
    """Owns the collector's Redis writes; see collector.schema for the layout."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        node_ttl: float = 30.0,
        flow_ttl: float = 300.0,
        history: HistoryPolicy | None = None,
        confirm_after: float = 10.0,
    ):
        self.client = client
        self.keys = keys
        self.node_ttl = max(1, int(node_ttl))
        self.flow_ttl = max(1, int(flow_ttl))
        self.history = history or HistoryPolicy()
        self.pending: Counter = Counter()
        # Writes sent (answered or not) that Redis may not hold, oldest first,
        # kept confirm_after s: a failover may lose what was acknowledged.
        self.sent: list[SentBatch] = []
        self.confirm_after = confirm_after
        # (batch id, counts) of batches no longer kept, newest last.
        self.confirmed: deque[tuple[str, int]] = deque(maxlen=1000)
        # Reported lost: what Redis acknowledged, then lost for good.
        self.lost_batches = 0
        self.lost_counts = 0
        h = self.history
        self.tiers = (HistoryTier("fine", h.step, h.fine),
                      HistoryTier("coarse", h.coarse_step, h.window))
        # The host's flow totals as Redis holds them (None: to be read), and
        # its ids hash (short container id -> whole id), read with them.
        self.totals: Counter | None = None
        self.short_ids: dict[str, str] = {}
        self._keyframe_at = 0.0
        # The latest keyframe written (decoded): snapshots are stored against
        # it (collector.history_format); None: they stand alone until the next.
        self.frame: dict | None = None
        self._last_written: float | None = None  # time.monotonic()
        self.connected = True
        self._next_attempt = 0.0
        self._backoff = 0.5

    def report(self, report: HostReport, now: float | None = None) -> bool:
        """Write one report; on failure keep its counters for the next call."""
        now = time.time() if now is None else now
        self.pending.update(report.flows)
        for tier in self.tiers:
            tier.counts.update(report.flows)
        if time.monotonic() < self._next_attempt:
            return False
        host_id = report.host.id
        try:
            if self.sent and not self.sent[-1].answered:
                # Whether the write without an answer landed, before more go.
                self._reconcile(self.client.get(self.keys.applied(host_id)))
            if (self._last_written is not None
                    and time.monotonic() - self._last_written > self.flow_ttl):
                self.totals = None  # silent long enough for them to expire
            if self.totals is None:
                self.totals = self._read_totals(host_id)
            batch = SentBatch(host_id, uuid.uuid4().hex, self.pending,
                              sent_at=time.monotonic())
            self.pending = Counter()
            self._take_snapshots(batch, now)
            self.sent.append(batch)
            previous = self._write(report, batch, now)
            batch.answered = True
            self._reconcile(previous, before=batch)
            self._announce(host_id, now)
        except REDIS_ERRORS as exc:
            # Unreachable, refusing writes (out of memory, a read-only replica
            # after a failover...) or a cluster moving a slot: keep everything,
            # try again later.
            if self.connected:
                log.warning(
                    "Redis write failed (%s); keeping %d counters until it "
                    "succeeds", exc, len(self.pending) + sum(
                        len(b.batch) for b in self.sent if not b.answered),
                )
            self.connected = False
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 10.0)
            return False
        self._last_written = time.monotonic()
        if not self.connected:
            log.warning("Redis is back; flushed the counters kept meanwhile")
        self.connected = True
        self._backoff = 0.5
        return True

    def set_next_history(self, tiers) -> None:
        """Make the next reports snapshot exactly the history ``tiers`` named
        ("fine", "coarse"; "totals": a keyframe) until set again: a replay
        writes history where the recorded collector did."""
        for tier in self.tiers:
            tier.next_at = 0.0 if tier.name in tiers else float("inf")
        self._keyframe_at = 0.0 if "totals" in tiers else float("inf")

    def _take_snapshots(self, batch: SentBatch, now: float) -> None:
        """Move the due tiers' counts into ``batch``: they leave with it, so
        a write that lands without an answer never snapshots them again. A
        coarse snapshot takes a fine one with it; a keyframe goes with a
        coarse one."""
        fine, coarse = self.tiers
        due = {"coarse": now >= coarse.next_at}
        due["fine"] = due["coarse"] or now >= fine.next_at
        for tier in self.tiers:
            if due[tier.name]:
                batch.snapshots[tier.name], tier.counts = tier.counts, Counter()
                tier.next_at = now + tier.step
        batch.keyframe = due["coarse"] and now >= self._keyframe_at
        if batch.keyframe:
            self._keyframe_at = now + self.history.keyframe

    def _read_totals(self, host_id: str) -> Counter:
        """The host's flow totals as Redis holds them now (its flows hash,
        whose short container ids its containers hash resolves)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hkeys(self.keys.containers(host_id))
        pipe.hgetall(self.keys.ids(host_id))
        pipe.hgetall(self.keys.flows(host_id))
        container_ids, ids, raw = pipe.execute()
        self.short_ids = {k.decode(): v.decode() for k, v in ids.items()}
        fields = HostFlowFields(host_id, [c.decode() for c in container_ids],
                                self.short_ids)
        totals: Counter = Counter()
        for name, value in raw.items():
            try:
                totals[fields.parse(name.decode())] += int(value)
            except (SchemaError, ValueError, UnicodeDecodeError):
                continue  # another version's field: not ours to count
        return totals

    def _reconcile(self, applied: bytes | None,
                   before: SentBatch | None = None) -> None:
        """Given the id of the last batch Redis holds (``applied``, as it was
        before ``before`` was written), send again the kept batches it lacks."""
        kept = self.sent[:-1] if before is not None else self.sent
        applied_id = applied.decode() if applied is not None else None
        ids = [b.batch_id for b in kept]
        if applied_id in ids:
            landed = ids.index(applied_id) + 1
            missing, kept = kept[landed:], kept[:landed]
        else:
            # Redis holds none of the kept batches: a failover that lost more
            # than confirm_after s, or none of this host's writes reached a
            # replica; or a restart without persistence, or an expiry. The
            # kept ones are sent again; older ones after the last it holds
            # cannot be.
            missing, kept = kept, []
            confirmed_ids = [i for i, _ in self.confirmed]
            after = list(self.confirmed)
            if applied_id in confirmed_ids:
                after = after[confirmed_ids.index(applied_id) + 1:]
            if after:
                self._report_lost(len(after), sum(n for _, n in after),
                                  "Redis lost writes it had acknowledged more "
                                  f"than {self.confirm_after:g} s before")
            self.confirmed.clear()
            if missing or after:
                self.totals = None  # Redis lost some: read its totals again
        if any(b.answered for b in missing):
            log.warning("Redis lost %d acknowledged batches (a failover, a "
                        "restart?); sending them again",
                        sum(b.answered for b in missing))
        for b in missing:
            self.pending.update(b.batch)
            if self.totals is not None:
                self.totals.subtract(b.batch)  # added again when re-sent
            for tier in self.tiers:
                if tier.name in b.snapshots:
                    tier.counts.update(b.snapshots[tier.name])
                    tier.next_at = 0.0  # snapshot them with the next write
        if missing:
            # A keyframe written since counted them (or is lost with them):
            # the next coarse snapshot writes a right one, and the snapshots
            # until then stand alone.
            self._keyframe_at = 0.0
            self.frame = None
        # Batches Redis held for confirm_after s are taken as safe.
        horizon = time.monotonic() - self.confirm_after
        while kept and kept[0].sent_at < horizon:
            b = kept.pop(0)
            self.confirmed.append((b.batch_id, b.size()))
        self.sent = kept + ([before] if before is not None else [])

    def _report_lost(self, batches: int, counts: int, why: str) -> None:
        self.lost_batches += batches
        self.lost_counts += counts
        log.error("%s: %d batches (%d counts) are lost and cannot be sent "
                  "again", why, batches, counts)

    def _snapshot(self, report: HostReport, counts: Counter, rates: dict,
                  now: float, since: float | None) -> bytes:
        frame = self.frame
        if frame is not None and now - frame["ts"] > (
                self.history.keyframe + self.history.coarse_step):
            frame = None  # too old to be kept as long as this snapshot
        fields = {make_flow_field(k, c): v for (k, c), v in counts.items() if v}
        if outgrows(frame, [*fields, *rates]):
            # Its flows are written by name until the next keyframe: bring
            # that forward to the next coarse step.
            self._keyframe_at = min(self._keyframe_at, now)
        return encode_history({
            "ts": now,
            "since": since,  # the tier's previous snapshot: the counts' start
            "host": report.host.to_dict(),
            "containers": [c.to_dict() for c in report.containers],
            "addrs": report.addrs,
            "counts": fields,
            "rates": rates,
        }, frame)

    def _write(self, report: HostReport, sent: SentBatch, now: float) -> bytes | None:
        """One transaction on the host's keys (one cluster slot): its records,
        the batch's counters and id, and the history snapshots ``sent``
        carries. Returns the id of the batch Redis held before."""
        batch = sent.batch
        host_id = report.host.id
        k = self.keys
        rates = report.rates
        if rates is None:
            rates = flow_rates(report.flows, report.interval)
        # The live hashes' fields are short (collector.flow_fields); history
        # keeps the canonical ones.
        fields = host_flow_fields(host_id, [c.id for c in report.containers],
                                  self.short_ids)
        new_ids = {short: cid for short, cid in fields.short_ids().items()
                   if self.short_ids.get(short) != cid}
        pipe = self.client.pipeline(transaction=True)
        # GETSET, not SET ... GET: Redis before 6.2 has only the former.
        pipe.getset(k.applied(host_id), sent.batch_id)
        pipe.expire(k.applied(host_id), self.flow_ttl)
        pipe.set(k.host(host_id), report.host.to_json(), ex=self.node_ttl)
        # A container's metrics apart from the rest of its record: they move
        # every report, the rest seldom (collector.schema: P:metrics).
        pipe.delete(k.containers(host_id), k.container_metrics(host_id))
        if report.containers:
            pipe.hset(
                k.containers(host_id),
                mapping={c.id: c.identity_json() for c in report.containers},
            )
            pipe.expire(k.containers(host_id), self.node_ttl)
            metrics = {c.id: c.metrics_json() for c in report.containers
                       if c.metrics}
            if metrics:
                pipe.hset(k.container_metrics(host_id), mapping=metrics)
                pipe.expire(k.container_metrics(host_id), self.node_ttl)
        pipe.delete(k.addrs(host_id))
        if report.addrs:
            pipe.hset(k.addrs(host_id), mapping=report.addrs)
            pipe.expire(k.addrs(host_id), self.node_ttl)
        pipe.delete(k.rates(host_id))
        if rates:
            pipe.hset(k.rates(host_id), mapping={
                fields.name(*fields.parse(f)): v for f, v in rates.items()})
            pipe.expire(k.rates(host_id), self.node_ttl)
        flows_key = k.flows(host_id)
        for (flow, counter), delta in batch.items():
            if delta:
                pipe.hincrby(flows_key, fields.name(flow, counter), delta)
        pipe.expire(flows_key, self.flow_ttl)
        if new_ids:
            pipe.hset(k.ids(host_id), mapping=new_ids)
        pipe.expire(k.ids(host_id), self.flow_ttl)
        if self.totals is not None:
            self.totals.update(batch)  # what Redis holds once this lands
            if sent.keyframe:
                # Kept beyond the window by a keyframe period and a coarse
                # step, so that every snapshot still kept has its keyframe.
                h = self.history
                keep = h.window + h.keyframe + h.coarse_step
                key = k.history(host_id, "totals")
                blob, self.frame = encode_keyframe({
                    "ts": now,
                    "totals": {make_flow_field(f, c): v
                               for (f, c), v in self.totals.items() if v > 0},
                    "host": report.host.to_dict(),
                    "containers": [c.to_dict() for c in report.containers],
                    "addrs": report.addrs})
                pipe.zadd(key, {blob: now})
                pipe.zremrangebyscore(key, "-inf", now - keep)
                pipe.expire(key, int(keep) + 60)
        for tier in self.tiers:
            if tier.name not in sent.snapshots:
                continue
            key = k.history(host_id, tier.name)
            snapshot = self._snapshot(report, sent.snapshots[tier.name], rates,
                                      now, tier.last_at)
            tier.last_at = now
            pipe.zadd(key, {snapshot: now})
            pipe.zremrangebyscore(key, "-inf", now - tier.keep)
            pipe.expire(key, int(tier.keep) + 60)
        previous = pipe.execute()[0]
        self.short_ids.update(new_ids)
        return previous

    def _announce(self, host_id: str, now: float) -> None:
        """List the host as live and tell the web tier, once its keys are in.

        Outside the transaction: ``P:collectors`` has its own cluster slot,
        and a cluster transaction cannot PUBLISH.
        """
        self.client.zadd(self.keys.collectors, {host_id: now})
        self.client.publish(self.keys.changes, json.dumps({"host": host_id, "ts": now}))


def add_flow(flows: Counter, key: FlowKey, counters: dict[str, int]) -> None:
    """Add one sample's counters to a report's flow deltas."""
    for name, value in counters.items():
        if value:
            flows[(key, name)] += value
