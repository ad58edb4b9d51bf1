"""Writes one host's view into Redis, and keeps it while Redis is away.

Counters are only ever added with HINCRBY inside one MULTI/EXEC, so several
collectors (and several writes of one collector) never lose an update. Deltas
that could not be written stay pending and are added to the next attempt, so a
Redis outage loses no count: it only delays it. Each batch carries an id that
the same transaction stores; when a write fails without an answer, the next
attempt asks whether that id landed, so a batch is never added twice either.

History: every ``history_step`` seconds the host's records, the counts of the
step and the latest rates go into a fine-grained sorted set (kept
``history_fine`` seconds), and every ``history_coarse_step`` seconds into a
coarse one (kept ``history_window`` seconds): full resolution for the recent
past, downsampled after.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from collector.schema import (
    RATE_COUNTERS,
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    encode_snapshot,
    make_flow_field,
)

log = logging.getLogger("portolan.collector.reporter")


def redis_client(url: str) -> redis.Redis:
    """A client that fails fast: the collector must keep aggregating meanwhile.

    No automatic retries: a blind re-send of a transaction whose answer was lost
    could add its counters twice; RedisReporter retries with batch ids instead.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
    )


@dataclass(slots=True)
class HostReport:
    """Everything one collector says about its host in one interval."""

    host: HostRecord
    containers: list[ContainerRecord] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)  # address -> target
    flows: Counter = field(default_factory=Counter)  # (FlowKey, counter) -> delta
    interval: float = 1.0  # seconds the flows were counted over


@dataclass(slots=True)
class HistoryPolicy:
    step: float = 5.0
    fine: float = 900.0
    coarse_step: float = 60.0
    window: float = 3600.0


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


@dataclass(slots=True)
class InDoubt:
    """A write that failed without an answer: what it carried, to put back
    if it did not land. ``snapshots``: tier name -> the counts of the history
    snapshot it wrote there."""

    host_id: str
    batch_id: str
    batch: Counter
    snapshots: dict[str, Counter] = field(default_factory=dict)


class RedisReporter:
    """Owns the collector's Redis writes; see collector.schema for the layout."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        node_ttl: float = 30.0,
        flow_ttl: float = 300.0,
        history: HistoryPolicy | None = None,
    ):
        self.client = client
        self.keys = keys
        self.node_ttl = max(1, int(node_ttl))
        self.flow_ttl = max(1, int(flow_ttl))
        self.history = history or HistoryPolicy()
        self.pending: Counter = Counter()
        # A write whose transaction may or may not have landed.
        self.in_doubt: InDoubt | None = None
        h = self.history
        self.tiers = (HistoryTier("fine", h.step, h.fine),
                      HistoryTier("coarse", h.coarse_step, h.window))
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
        try:
            self._settle_in_doubt()
            doubt = InDoubt(report.host.id, uuid.uuid4().hex, self.pending)
            self.pending = Counter()
            # The snapshots' counts leave with the batch: a write that lands
            # without an answer must not have them snapshotted again.
            for tier in self.tiers:
                if now >= tier.next_at:
                    doubt.snapshots[tier.name], tier.counts = tier.counts, Counter()
                    tier.next_at = now + tier.step
            self.in_doubt = doubt
            self._write(report, doubt, now)
            self.in_doubt = None
        except (redis.RedisError, OSError) as exc:
            # Unreachable, or refusing writes (out of memory, a read-only
            # replica after a failover...): keep everything, try again later.
            if self.connected:
                log.warning(
                    "Redis write failed (%s); keeping %d counters until it "
                    "succeeds", exc, len(self.pending) + len(
                        self.in_doubt.batch if self.in_doubt else ()),
                )
            self.connected = False
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 10.0)
            return False
        if not self.connected:
            log.warning("Redis is back; flushed the counters kept meanwhile")
        self.connected = True
        self._backoff = 0.5
        return True

    def _settle_in_doubt(self) -> None:
        """Drop an unanswered batch that landed; put back one that did not."""
        doubt = self.in_doubt
        if doubt is None:
            return
        applied = self.client.get(self.keys.applied(doubt.host_id))
        if applied is None or applied.decode() != doubt.batch_id:
            self.pending.update(doubt.batch)
            for tier in self.tiers:
                if tier.name in doubt.snapshots:
                    tier.counts.update(doubt.snapshots[tier.name])
                    tier.next_at = 0.0  # snapshot them with the next write
        self.in_doubt = None

    def _snapshot(self, report: HostReport, counts: Counter, rates: dict,
                  now: float) -> bytes:
        return encode_snapshot({
            "ts": now,
            "host": report.host.to_dict(),
            "containers": [c.to_dict() for c in report.containers],
            "addrs": report.addrs,
            "counts": {make_flow_field(k, c): v for (k, c), v in counts.items() if v},
            "rates": rates,
        })

    def _write(self, report: HostReport, doubt: InDoubt, now: float) -> None:
        """One transaction: the host's records, the batch's counters (with
        its id) and the history snapshots ``doubt`` carries."""
        batch = doubt.batch
        host_id = report.host.id
        k = self.keys
        rates = flow_rates(report.flows, report.interval)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(k.host(host_id), report.host.to_json(), ex=self.node_ttl)
        pipe.delete(k.containers(host_id))
        if report.containers:
            pipe.hset(
                k.containers(host_id),
                mapping={c.id: c.to_json() for c in report.containers},
            )
            pipe.expire(k.containers(host_id), self.node_ttl)
        pipe.delete(k.addrs(host_id))
        if report.addrs:
            pipe.hset(k.addrs(host_id), mapping=report.addrs)
            pipe.expire(k.addrs(host_id), self.node_ttl)
        pipe.delete(k.rates(host_id))
        if rates:
            pipe.hset(k.rates(host_id), mapping=rates)
            pipe.expire(k.rates(host_id), self.node_ttl)
        flows_key = k.flows(host_id)
        pipe.set(k.applied(host_id), doubt.batch_id, ex=self.flow_ttl)
        for (flow, counter), delta in batch.items():
            if delta:
                pipe.hincrby(flows_key, make_flow_field(flow, counter), delta)
        pipe.expire(flows_key, self.flow_ttl)
        for tier in self.tiers:
            if tier.name not in doubt.snapshots:
                continue
            key = k.history(host_id, tier.name)
            snapshot = self._snapshot(report, doubt.snapshots[tier.name], rates, now)
            pipe.zadd(key, {snapshot: now})
            pipe.zremrangebyscore(key, "-inf", now - tier.keep)
            pipe.expire(key, int(tier.keep) + 60)
        pipe.zadd(k.collectors, {host_id: now})
        pipe.publish(k.changes, json.dumps({"host": host_id, "ts": now}))
        pipe.execute()


def add_flow(flows: Counter, key: FlowKey, counters: dict[str, int]) -> None:
    """Add one sample's counters to a report's flow deltas."""
    for name, value in counters.items():
        if value:
            flows[(key, name)] += value
