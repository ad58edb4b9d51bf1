"""The graph builder process: one active per Redis, the others on standby.

The active builder follows ``Keys.changes``; after each batch of change notices
(at most every ``min_interval`` seconds, and every ``recheck_interval`` seconds
without any, since a host whose keys expire publishes nothing) it updates the
fleet and the levels someone watches (``GraphKeys.watched``), publishes each
changed level's diff once to the level's Channels group, then stores it (and,
now and then, a whole snapshot) under ``GraphKeys``: a report's way to the
maps never waits for a snapshot's encoding. A level nobody
watches is left as it was; when it is watched again it is rebuilt and diffed
against what was stored, so its sequence of diffs stays unbroken. A standby
polls the lease; on taking it, it loads each level's stored snapshot and
diffs and continues the sequence from there, so relays and their open maps
simply receive the next diff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import redis
from channels.layers import get_channel_layer
from redis.backoff import ExponentialBackoff

from collector.redis_client import REDIS_ERRORS, async_redis_client, redis_client
from collector.schema import Keys, SchemaError, parse_node_id
from webapp.anomalies.merge import read_verdict
from webapp.builder.fleet import Fleet
from webapp.builder.keys import (
    UPDATE_TYPE,
    GraphKeys,
    decode_entry,
    decode_snapshot_blob,
    encode_entry,
    encode_snapshot_blob,
    group_name,
)
from webapp.builder.levels import LEVELS, LevelView, build_levels
from webapp.builder.stored import encode_fresh
from webapp.lease import Lease
from webapp.maps.diff import apply_diff, encode_diff, encode_snapshot, is_empty
from webapp.maps.frames import pack_frame
from webapp.maps.tasks import end_if_cancelled
from webapp.round_collector import RoundCollector
from webapp.topology.store import live_collectors

__all__ = ["BuilderSettings", "GraphBuilder", "Publication", "RoundTimes",
           "encode_message", "load_stored", "snapshot_payload"]

log = logging.getLogger("portolan.builder")

MESSAGE_LIMIT = 512 * 1024  # bytes of JSON per socket message (Daphne: 1 MiB)
# Seconds between young garbage collections when no round built a graph.
YOUNG_COLLECTION_S = 5.0


def encode_message(message: dict) -> str:
    """Compact JSON: a 10,000-container map is megabytes of it."""
    return json.dumps(message, separators=(",", ":"))


@dataclass(slots=True)
class BuilderSettings:
    prefix: str = "portolan"
    node_ttl: float = 30.0  # a host is on the map this long after its last report
    collector_ttl: float = 10.0  # silent this long: shown as not reporting
    lease_ttl: float = 3.0
    # Seconds between the starts of two updates at least: the maps get at
    # most four diffs a second (test_bursts_are_batched), whatever a step's
    # own cost (~2 ms beside its hosts': bench/builder_round.py --steps 4
    # against 16). Counted from the start, a round longer than this is
    # followed at once by the next (reports waiting meanwhile): no pause.
    min_interval: float = 0.25
    recheck_interval: float = 1.0  # update this often even without notices
    snapshot_interval: float = 10.0  # store a whole snapshot at least this often
    store_ttl: float = 120.0  # stored snapshots and diffs outlive a dead builder
    # The stored level counts as current this long after a step: a step of a
    # fleet under load (Redis busy with 500 collectors) takes several seconds.
    fresh_ttl: float = 15.0
    # Keep every level current, watched or not (tests; a builder nobody asks).
    all_levels: bool = False
    # Publish each round's diffs before storing them (a snapshot's encoding
    # and write are then off a report's way to the maps); False: store first,
    # as builders before did (bench/fleet_scale.py compares the two).
    publish_first: bool = True
    # Append each round's RoundTimes as a JSON line to this file (benchmarks).
    timings_path: str | None = None
    # A change of shape (a new flow, container or address) rebuilds the levels.
    # A rebuild that cost more than ``pace_above`` s of CPU is followed by the
    # next one only ``rebuild_pacing`` times that cost later, so rebuilds
    # take at most a fifth of the builder's time however often shapes change
    # (a new client somewhere in a fleet is most seconds); counters keep
    # being updated meanwhile. A small fleet rebuilds at once.
    rebuild_pacing: float = 4.0
    pace_above: float = 0.25
    # Nodes whose metrics alone moved, redrawn per second at most (0: no
    # limit). On real hosts every container's metrics move every report; at
    # 10,000 containers redrawing all of them each second was most of the
    # builder's round. Beyond this rate the nodes that have waited longest
    # go first, so a node's figures on the map are at most (moving nodes /
    # rate) seconds old: every second below it. Flows, errors, verdicts and
    # shapes are never held back; the node API reads Redis itself.
    metric_nodes_per_s: float = 2000.0


@dataclass(slots=True)
class Publication:
    level: str
    seq: int
    texts: list[bytes] | None  # UTF-8 JSON messages; None: reload the snapshot
    snapshot: bool = False  # a whole snapshot is stored at this step


@dataclass(slots=True)
class RoundTimes:
    """When one round of the live loop reached each stage (``time.time()``):
    what ``bench/fleet_scale.py`` splits a report's wait for its diff into."""

    start: float  # notices gathered, the update begins
    hosts: int  # hosts that reported
    updated: float = 0.0  # the levels updated, diffs known
    published: float = 0.0  # diffs sent to the Channels groups
    stored: float = 0.0  # diffs (or a snapshot) stored
    # seconds the longest waiting node's moved metrics have waited to be
    # drawn, and how many nodes wait (``metric_nodes_per_s``)
    metrics_lag: float = 0.0
    metrics_waiting: int = 0
    seqs: dict = field(default_factory=dict)  # level -> seq published
    snapshots: list = field(default_factory=list)  # levels whose snapshot was stored


def snapshot_payload(texts: list[str]) -> dict:
    """The node-link graph that encoded snapshot parts carry, joined."""
    payload = None
    for text in texts:
        graph = json.loads(text)["graph"]
        if payload is None:
            payload = {k: v for k, v in graph.items() if k not in ("nodes", "links")}
            payload["nodes"], payload["links"] = [], []
        payload["nodes"] += graph["nodes"]
        payload["links"] += graph["links"]
    return payload or {"nodes": [], "links": []}


def load_stored(client: redis.Redis, gkeys: GraphKeys, level: str
                ) -> tuple[int, list[str], list[tuple[int, list[str]]]] | None:
    """``(seq, snapshot texts, [(seq, diff texts)...])`` as stored, or None."""
    pipe = client.pipeline(transaction=True)  # one slot: a consistent pair
    pipe.get(gkeys.snapshot(level))
    pipe.lrange(gkeys.diffs(level), 0, -1)
    blob, entries = pipe.execute()
    if blob is None:
        return None
    seq, texts = decode_snapshot_blob(blob)
    diffs = [d for d in map(decode_entry, entries) if d[0] > seq]
    return seq, texts, diffs


class _StoredLevel:
    """A level's sequence and what its stored snapshot and diff list hold."""

    def __init__(self):
        self.seq = 0
        self.snapshot_seq = 0  # the seq of the stored snapshot
        self.snapshot_at = 0.0  # time.monotonic() of the last stored snapshot
        self.snapshot_bytes = 0
        self.diff_bytes = 0  # stored since that snapshot


class GraphBuilder:
    """Keeps each level's graph for every web worker; see the module docstring."""

    def __init__(self, client: redis.Redis, conf: BuilderSettings | None = None,
                 owner: str | None = None):
        self.client = client
        self.conf = conf or BuilderSettings()
        self.keys = Keys(self.conf.prefix)
        self.gkeys = GraphKeys(self.conf.prefix)
        self.lease = Lease(client, self.gkeys.lock, self.conf.lease_ttl, owner)
        self.active = False
        self.steps = 0
        self.full_builds = 0
        # Takes over only when asked; young collections every 5 s or after
        # a build (round_collector.py: a round of moving metrics replaces
        # every record, dead by the next collection).
        self.collector = RoundCollector(young_every=YOUNG_COLLECTION_S)
        self._reset()

    @classmethod
    def from_settings(cls, **overrides) -> GraphBuilder:
        """A builder for the Django settings' Redis, prefix and TTLs."""
        from django.conf import settings

        conf = settings.PORTOLAN
        client = redis_client(settings.REDIS_URL, retries=3,
                              socket_connect_timeout=1.0, socket_timeout=5.0)
        values = {"prefix": conf["KEY_PREFIX"], "node_ttl": conf["NODE_TTL"],
                  "collector_ttl": conf["COLLECTOR_TTL"],
                  "lease_ttl": conf.get("BUILDER_LEASE_TTL", 3.0),
                  "metric_nodes_per_s": conf.get("BUILDER_METRIC_NODES", 2000.0)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(client, BuilderSettings(**values))

    def _reset(self) -> None:
        self.fleet = Fleet()
        self.views = {level: LevelView(level) for level in LEVELS}
        self.stored = {level: _StoredLevel() for level in LEVELS}
        self.analysis: tuple[dict, list] | None = None
        self.silent: dict[str, float] = {}
        # Levels that missed changes while nobody watched them.
        self.stale: set[str] = set()
        self.reshaped = False  # a change of shape waits for its rebuild
        self.build_cost = 0.0  # CPU seconds of the last full build
        self.built_at = -math.inf  # monotonic time it ended
        self.current: set[str] = set()  # levels brought up to date by the update
        # Nodes whose metrics moved and are not redrawn yet, longest waiting
        # first, with the time they began to wait (``metric_nodes_per_s``),
        # and the redraws the rate allows now.
        self.metrics_due: dict[str, float] = {}
        self.metric_allowance = 0.0
        self.metrics_at: float | None = None

    # ------------------------------------------------------------ takeover

    def take_over(self) -> None:
        """Continue each level from what the previous builder stored."""
        self._reset()
        for level in LEVELS:
            stored = self.stored[level]
            try:
                found = load_stored(self.client, self.gkeys, level)
            except SchemaError as exc:
                log.warning("stored %s graph unreadable (%s); starting anew",
                            level, exc)
                found = None
            if found is None:
                # Past any seq a relay may hold: they reload, never mis-apply.
                stored.seq = int(time.time() * 1000)
                continue
            seq, texts, diffs = found
            payload = snapshot_payload(texts)
            for _, diff_texts in diffs:
                for text in diff_texts:
                    payload = apply_diff(payload, json.loads(text))
            stored.seq = diffs[-1][0] if diffs else seq
            stored.snapshot_seq = seq
            self.views[level] = LevelView(level, payload)
        log.info("builder %s is now the active graph builder", self.lease.owner)

    # ------------------------------------------------------------ one step

    def step(self, reported: set[str], now: float | None = None
             ) -> list[Publication]:
        """Update the levels from the hosts in ``reported``; store the diffs."""
        builds = self.full_builds
        publications = self.publications(self.update(reported, now))
        publications += self.store(publications)
        self.collector.after_round(built=self.full_builds != builds)
        return publications

    def update(self, reported: set[str], now: float | None = None
               ) -> dict[str, dict | None]:
        """Update the levels from the hosts in ``reported``: level -> diff
        (None: a first graph, nothing to diff against)."""
        now = time.time() if now is None else now
        self.steps += 1
        live = live_collectors(self.client, self.keys, self.conf.node_ttl, now)
        change = self.fleet.update(self.client, self.keys, reported, live)
        analysis = read_verdict(self.client, self.conf.prefix, now)
        silent = {h: seen for h, seen in live.items()
                  if now - seen > self.conf.collector_ttl}
        self.reshaped = self.reshaped or change.structural
        if (self.reshaped and self._rebuild_due()) or silent != self.silent:
            self.stale.update(LEVELS)
            self.reshaped = False
        judged_again = analysis != self.analysis
        self.analysis, self.silent = analysis, silent
        watched = self.watched_levels()
        full = {level for level in watched
                if level in self.stale or self.views[level].graph is None}
        diffs: dict[str, dict | None] = {}
        if full:
            self.full_builds += 1
            started = time.thread_time()  # this build's own CPU, no other thread's
            graphs = build_levels(self.fleet.state, analysis, silent, full)
            for level, graph in graphs.items():
                diffs[level] = self.views[level].replace(graph)
            self.stale -= full
            self.build_cost = time.thread_time() - started
            self.built_at = time.monotonic()
        if judged_again:
            # A new verdict alone: judge the kept levels again, in place.
            for level in sorted(watched - full):
                diffs[level] = self.views[level].reapply(analysis, silent)
        nodes = self._metrics_now(change.nodes, now, rebuilt=watched <= full)
        if change.flows or nodes:
            sources = self._node_sources(nodes)
            for level in sorted(watched - full):
                diffs[level] = _then(diffs.get(level), self.views[level].update(
                    self.fleet.state, change.flows, nodes, analysis, sources))
        if judged_again or change.flows or change.nodes:
            self.stale.update(set(LEVELS) - watched)
        self.current = watched
        return diffs

    def _metrics_now(self, moved: set[str], now: float, rebuilt: bool) -> set[str]:
        """The nodes whose moved metrics are redrawn this round: all of them
        while the rate allows, else the longest waiting (the others wait).
        ``rebuilt``: every watched level was just built from the records."""
        due = self.metrics_due
        if rebuilt:
            due.clear()
            return set()
        rate = self.conf.metric_nodes_per_s
        if rate <= 0:
            return set(moved)
        for node_id in moved:
            due.setdefault(node_id, now)  # keeps its place if waiting
        elapsed = 1.0 if self.metrics_at is None else max(0.0, now - self.metrics_at)
        self.metrics_at = now
        # At most a second's worth: an idle spell buys no later burst.
        self.metric_allowance = min(rate, self.metric_allowance + rate * elapsed)
        if len(due) <= self.metric_allowance:
            taken = set(due)
            due.clear()
        else:
            taken = set(itertools.islice(due, int(self.metric_allowance)))
            for node_id in taken:
                del due[node_id]
        self.metric_allowance -= len(taken)
        return taken

    def metrics_lag(self, now: float) -> float:
        """Seconds the longest waiting node's moved metrics have waited to be
        redrawn (0 when none waits)."""
        for since in self.metrics_due.values():
            return max(0.0, now - since)
        return 0.0

    def _rebuild_due(self) -> bool:
        """Whether a change of shape may rebuild now (``rebuild_pacing``)."""
        if self.build_cost <= self.conf.pace_above:
            return True
        return (time.monotonic() - self.built_at
                >= self.conf.rebuild_pacing * self.build_cost)

    def watched_levels(self) -> set[str]:
        """The levels someone reads live (all with ``all_levels``)."""
        if self.conf.all_levels:
            return set(LEVELS)
        flags = self.client.mget([self.gkeys.watched(level) for level in LEVELS])
        return {level for level, flag in zip(LEVELS, flags, strict=True) if flag}

    def _node_sources(self, node_ids) -> dict[str, dict]:
        """The volatile attributes (metrics) of nodes whose records changed."""
        s = self.fleet.state
        out = {}
        for node_id in node_ids:
            kind, parts = parse_node_id(node_id)
            if kind == "host" and parts[0] in s.hosts:
                out[node_id] = {"metrics": dict(s.hosts[parts[0]].metrics)}
            elif kind == "container":
                record = s.containers.get(parts[0], {}).get(parts[1])
                if record is not None:
                    out[node_id] = {"metrics": dict(record.metrics),
                                    "processes": list(record.processes)}
        return out

    def publications(self, diffs: dict[str, dict | None]) -> list[Publication]:
        """Each changed level's next step: its diff encoded, and whether a
        whole snapshot is due (stored by ``store``)."""
        publications = []
        for level, diff in diffs.items():
            if diff is not None and is_empty(diff):
                continue
            stored = self.stored[level]
            stored.seq += 1
            texts = None
            if diff is not None:
                texts = encode_diff(diff, MESSAGE_LIMIT)
            size = sum(map(len, texts or ()))
            due = texts is None or _snapshot_due(
                time.monotonic() - stored.snapshot_at, self.conf.snapshot_interval,
                stored.diff_bytes + size, stored.snapshot_bytes)
            if not due:
                stored.diff_bytes += size
            publications.append(Publication(level, stored.seq, texts, due))
        return publications

    def store(self, publications: list[Publication]) -> list[Publication]:
        """Store each step's diff (or a new snapshot); what to publish besides:
        a new snapshot of each level whose stored one Redis lost."""
        pipe = self.client.pipeline(transaction=True)  # one slot: {graph}
        ttl = max(1, int(self.conf.store_ttl))
        for p in publications:
            if p.snapshot:
                self._store_snapshot(pipe, p.level, ttl)
            else:
                pipe.rpush(self.gkeys.diffs(p.level), encode_entry(p.seq, p.texts))
        # Every level's snapshot stays while the builder runs (a first viewer
        # of an unwatched level sees it at once, then the diff that catches
        # it up); whether it is still there says if Redis lost it meanwhile.
        for level in LEVELS:
            pipe.expire(self.gkeys.snapshot(level), ttl)
            pipe.expire(self.gkeys.diffs(level), ttl)
        results = pipe.execute()
        kept = results[len(results) - 2 * len(LEVELS):][::2]  # the snapshots'
        lost = [level for level, there in zip(LEVELS, kept, strict=True)
                if not there and level in self.current
                and self.views[level].graph is not None]
        pipe = self.client.pipeline(transaction=True)
        self._mark_fresh(pipe, set(self.current) - set(lost))
        reloads = []
        if lost:
            # Flushed or expired under us: a new snapshot, and relays reload.
            for level in lost:
                self.stored[level].seq += 1
                self._store_snapshot(pipe, level, ttl)
                reloads.append(Publication(level, self.stored[level].seq, None,
                                           True))
            self._mark_fresh(pipe, lost)
        pipe.execute()
        return reloads

    def _store_snapshot(self, pipe, level: str, ttl: int) -> None:
        """Queue the level's whole snapshot at its seq, its diff list emptied."""
        stored = self.stored[level]
        snap = encode_snapshot(level, self.views[level].graph.payload(),
                               MESSAGE_LIMIT)
        pipe.set(self.gkeys.snapshot(level),
                 encode_snapshot_blob(stored.seq, snap), ex=ttl)
        pipe.delete(self.gkeys.diffs(level))
        stored.snapshot_seq = stored.seq
        stored.snapshot_at = time.monotonic()
        stored.snapshot_bytes = sum(map(len, snap))
        stored.diff_bytes = 0

    def _mark_fresh(self, pipe, levels) -> None:
        fresh = max(1, round(self.conf.fresh_ttl))
        for level in levels:
            stored = self.stored[level]
            pipe.set(self.gkeys.fresh(level),
                     encode_fresh(time.time(), stored.seq, stored.snapshot_seq),
                     ex=fresh)

    # ------------------------------------------------------------ the loop

    async def run(self, duration: float | None = None,
                  stop: asyncio.Event | None = None) -> None:
        """Stand by or build until ``stop`` is set (or ``duration`` s pass)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        if duration is not None:
            loop.call_later(duration, stop.set)
        backoff = ExponentialBackoff(cap=10.0, base=0.5)
        failures = 0
        try:
            while not stop.is_set():
                end_if_cancelled()
                try:
                    if await asyncio.to_thread(self.lease.acquire):
                        await self._lead(stop)
                        failures = 0
                    else:
                        failures = 0
                        await _wait(stop, min(0.5, self.conf.lease_ttl / 4))
                        continue
                except REDIS_ERRORS as exc:
                    end_if_cancelled(exc)  # its cancellation, come back as one
                    log.warning("graph builder: Redis unreachable: %s", exc)
                except Exception as exc:  # noqa: BLE001 - a builder must never die of it
                    end_if_cancelled(exc)
                    log.exception("graph builder step failed")
                if self.active:
                    log.info("builder %s stands by", self.lease.owner)
                self.active = False
                await _wait(stop, backoff.compute(failures))
                failures += 1
        finally:
            await asyncio.to_thread(self.lease.release)

    async def _lead(self, stop: asyncio.Event) -> None:
        """While the lease is ours: follow notices, update, publish."""
        layer = get_channel_layer()
        client = async_redis_client(self._url(), socket_connect_timeout=1.0)
        lost = asyncio.Event()
        renew = asyncio.create_task(self._renew(lost))
        try:
            await client.initialize()
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(self.keys.changes)
                await asyncio.to_thread(self.take_over)
                self.active = True
                reported: set[str] = set()
                while not (stop.is_set() or lost.is_set()):
                    # A cancellation that channels_redis' group_send or
                    # redis-py swallowed on the way (webapp/maps/tasks.py).
                    end_if_cancelled()
                    times = RoundTimes(time.time(), len(reported))
                    last = loop_time()
                    builds = self.full_builds
                    publications = await asyncio.to_thread(
                        lambda r=reported: self.publications(self.update(r)))
                    times.updated = time.time()
                    times.metrics_lag = self.metrics_lag(times.updated)
                    times.metrics_waiting = len(self.metrics_due)
                    if not await asyncio.to_thread(self.lease.acquire):
                        break  # another builder took over meanwhile: not ours
                    # A report's diff waits for no store (nor a snapshot's
                    # encoding): a relay that reloads meanwhile finds the step
                    # before, sees a gap at the next one and reloads again. A
                    # step without a diff tells relays to reload: after it.
                    early = [p for p in publications if p.texts is not None
                             and self.conf.publish_first]
                    await self._publish(layer, early)
                    times.published = time.time()
                    reloads = await asyncio.to_thread(self.store, publications)
                    times.stored = time.time()
                    late = [p for p in publications if p not in early]
                    await self._publish(layer, late + reloads)
                    if late and not early:
                        times.published = time.time()
                    self._record(times, publications + reloads)
                    self.collector.after_round(built=self.full_builds != builds)
                    reported = await self._notices(pubsub, last)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await renew
            with contextlib.suppress(Exception):
                await client.aclose()

    def _url(self) -> str:
        from django.conf import settings

        return settings.REDIS_URL

    async def _renew(self, lost: asyncio.Event) -> None:
        """Keep the lease while a long step runs; flag its loss."""
        while True:
            await asyncio.sleep(self.conf.lease_ttl / 3)
            if not await asyncio.to_thread(self.lease.acquire):
                lost.set()
                return

    async def _notices(self, pubsub, last: float) -> set[str]:
        """Hosts that reported, gathered until the next update is due."""
        reported: set[str] = set()
        first = await pubsub.get_message(ignore_subscribe_messages=True,
                                         timeout=self.conf.recheck_interval)
        _note(first, reported)
        wait = last + self.conf.min_interval - loop_time()
        if wait > 0:
            await asyncio.sleep(wait)
        while message := await pubsub.get_message(ignore_subscribe_messages=True,
                                                  timeout=0.0):
            _note(message, reported)
        return reported

    def _record(self, times: RoundTimes, publications: list[Publication]) -> None:
        """Append the round's times to ``timings_path``, if set."""
        if not self.conf.timings_path:
            return
        times.seqs = {p.level: p.seq for p in publications}
        times.snapshots = [p.level for p in publications if p.snapshot]
        try:
            with open(self.conf.timings_path, "a") as out:
                out.write(json.dumps(asdict(times)) + "\n")
        except OSError as exc:
            log.warning("graph builder: cannot write round timings: %s", exc)
            self.conf.timings_path = None

    async def _publish(self, layer, publications: list[Publication]) -> None:
        for p in publications:
            await layer.group_send(group_name(p.level), {
                "type": UPDATE_TYPE, "level": p.level, "seq": p.seq,
                # compressed once here for every relay and socket
                "frames": (None if p.texts is None
                           else [pack_frame(t) for t in p.texts]),
            })


def _then(first: dict | None, second: dict) -> dict:
    """One diff that applies ``first`` and then ``second`` (the same node
    or edge may be in both: the later entry is applied after the earlier)."""
    if first is None:
        return second
    return {name: [*first.get(name, ()), *items] if isinstance(items, list)
            else items for name, items in second.items()}


def _snapshot_due(age: float, interval: float, diff_bytes: int,
                  snapshot_bytes: int) -> bool:
    """Whether to store a whole snapshot rather than one more diff.

    A joining socket gets the stored snapshot and every diff since (relays
    reload after ``RELOAD_AFTER`` of them), so what it receives stays under
    twice the snapshot: a new one once the diffs since outweigh it, and at
    least every ``interval`` seconds. Storing one sooner (once they were half
    of it) cost a whole encoding most rounds when every flow changes (~0.35 s
    at 500 hosts: ``bench/builder_round.py``) for a smaller catch-up.

    >>> _snapshot_due(1.0, 10.0, 900, 1000), _snapshot_due(1.0, 10.0, 1001, 1000)
    (False, True)
    >>> _snapshot_due(11.0, 10.0, 10, 1000)
    True
    """
    return age > interval or diff_bytes > snapshot_bytes


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _note(message, reported: set[str]) -> None:
    """Add the host a change notice names (analysis notices name none)."""
    if not message or message.get("type") != "message":
        return
    try:
        host = json.loads(message["data"]).get("host")
    except (ValueError, AttributeError):
        return
    if isinstance(host, str):
        reported.add(host)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
