"""Writes one host's view into Redis, and keeps it while Redis is away.

Counters are only ever added with HINCRBY inside one MULTI/EXEC, so several
collectors (and several writes of one collector) never lose an update. Deltas
that could not be written stay pending and are added to the next attempt, so a
Redis outage loses no count: it only delays it. Each batch carries an id that
the same transaction stores; when a write fails without an answer, the next
attempt asks whether that id landed, so a batch is never added twice either.
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
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
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
    addrs: dict[str, str] = field(default_factory=dict)  # ip -> node id
    flows: Counter = field(default_factory=Counter)  # (FlowKey, counter) -> delta


class RedisReporter:
    """Owns the collector's Redis writes; see collector.schema for the layout."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        node_ttl: float = 30.0,
        flow_ttl: float = 300.0,
    ):
        self.client = client
        self.keys = keys
        self.node_ttl = max(1, int(node_ttl))
        self.flow_ttl = max(1, int(flow_ttl))
        self.pending: Counter = Counter()
        # A batch whose transaction may or may not have landed:
        # (host id, batch id, counters).
        self.in_doubt: tuple[str, str, Counter] | None = None
        self.connected = True
        self._next_attempt = 0.0
        self._backoff = 0.5

    def report(self, report: HostReport, now: float | None = None) -> bool:
        """Write one report; on failure keep its counters for the next call."""
        now = time.time() if now is None else now
        self.pending.update(report.flows)
        if time.monotonic() < self._next_attempt:
            return False
        try:
            self._settle_in_doubt()
            batch_id = uuid.uuid4().hex
            batch, self.pending = self.pending, Counter()
            self.in_doubt = (report.host.id, batch_id, batch)
            self._write(report, batch, batch_id, now)
            self.in_doubt = None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self.connected:
                log.warning(
                    "Redis unreachable (%s); keeping %d counters until it is back",
                    exc, len(self.pending),
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
        if self.in_doubt is None:
            return
        host_id, batch_id, batch = self.in_doubt
        applied = self.client.get(self.keys.applied(host_id))
        if applied is None or applied.decode() != batch_id:
            self.pending.update(batch)
        self.in_doubt = None

    def _write(
        self, report: HostReport, batch: Counter, batch_id: str, now: float
    ) -> None:
        host_id = report.host.id
        k = self.keys
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
        flows_key = k.flows(host_id)
        pipe.set(k.applied(host_id), batch_id, ex=self.flow_ttl)
        for (flow, counter), delta in batch.items():
            if delta:
                pipe.hincrby(flows_key, make_flow_field(flow, counter), delta)
        pipe.expire(flows_key, self.flow_ttl)
        pipe.zadd(k.collectors, {host_id: now})
        pipe.publish(k.changes, json.dumps({"host": host_id, "ts": now}))
        pipe.execute()


def add_flow(flows: Counter, key: FlowKey, counters: dict[str, int]) -> None:
    """Add one sample's counters to a report's flow deltas."""
    for name, value in counters.items():
        if value:
            flows[(key, name)] += value
