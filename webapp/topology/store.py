"""Reads every live host's view out of Redis into plain records.

This is the only module of the web tier that reads the collectors' keys. A
malformed entry (a collector of another version, a hand-edited key) is logged
and skipped; it never takes the rest of the map down with it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from collector.flow_fields import host_flow_fields
from collector.history_format import (
    decode_history,
    decode_keyframe,
    decode_keyframes,
    keyframe_of,
    step_rates,
    totals_since_keyframe,
)
from collector.schema import (
    COUNTERS,
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    SchemaError,
    metrics_loads,
    validate_host_id,
)

log = logging.getLogger("portolan.topology.store")
COUNTER_SET = frozenset(COUNTERS)


@dataclass(slots=True)
class TopologyState:
    """All live hosts' records, merged: the input of the graph functions."""

    hosts: dict[str, HostRecord] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    containers: dict[str, dict[str, ContainerRecord]] = field(default_factory=dict)
    # host id -> address-index entry -> target (see collector.schema)
    addrs: dict[str, dict[str, str]] = field(default_factory=dict)
    # (host id, FlowKey) -> counter name -> per-second rate over the last interval
    rates: dict[tuple[str, FlowKey], dict[str, float]] = field(default_factory=dict)
    # (host id, FlowKey) -> counter name -> total
    flows: dict[tuple[str, FlowKey], dict[str, int]] = field(default_factory=dict)


def live_collectors(
    client: redis.Redis, keys: Keys, ttl: float, now: float | None = None
) -> dict[str, float]:
    """Host ids whose collector reported within ``ttl`` seconds, with the time."""
    now = time.time() if now is None else now
    rows = client.zrangebyscore(keys.collectors, now - ttl, "+inf", withscores=True)
    return {member.decode(): score for member, score in rows}


def read_state(
    client: redis.Redis, keys: Keys, ttl: float, now: float | None = None
) -> TopologyState:
    """Read the records of every host that reported within ``ttl`` seconds."""
    state = TopologyState()
    hosts = {}
    for host_id, seen in live_collectors(client, keys, ttl, now).items():
        try:
            hosts[validate_host_id(host_id)] = seen
        except SchemaError as exc:
            log.warning("skipping collector entry: %s", exc)
    pipe = client.pipeline(transaction=False)
    for host_id in hosts:
        pipe.get(keys.host(host_id))
        pipe.hgetall(keys.containers(host_id))
        pipe.hgetall(keys.addrs(host_id))
        pipe.hgetall(keys.flows(host_id))
        pipe.hgetall(keys.rates(host_id))
        pipe.hgetall(keys.ids(host_id))
        pipe.hgetall(keys.container_metrics(host_id))
    results = pipe.execute()
    for i, (host_id, seen) in enumerate(hosts.items()):
        (raw_host, raw_containers, raw_addrs, raw_flows, raw_rates, ids,
         raw_metrics) = results[7 * i: 7 * i + 7]
        state.last_seen[host_id] = seen
        state.hosts[host_id] = _host_record(host_id, raw_host)
        state.containers[host_id] = _containers(host_id, raw_containers,
                                                raw_metrics)
        state.addrs[host_id] = {
            a.decode(): t.decode() for a, t in raw_addrs.items()
        }
        cids = state.containers[host_id]
        for key, counters in _flows(host_id, raw_flows, int, cids, ids).items():
            state.flows[(host_id, key)] = counters
        for key, rates in _flows(host_id, raw_rates, float, cids, ids).items():
            state.rates[(host_id, key)] = rates
    return state


def read_state_at(
    client: redis.Redis, keys: Keys, at: float, step: float = 5.0,
    coarse_step: float = 60.0,
) -> TopologyState:
    """The hosts' records as the live map had them at unix time ``at``.

    Each host contributes its latest snapshot at or before ``at`` that is no
    older than two steps (fine history first, then coarse). Its flows carry
    their totals as they stood then (the keyframe before it plus the counts
    of every snapshot since: an edge quiet in that step keeps its totals, as
    on the live map) and their rates over that snapshot's step. Two
    pipelines in all, whatever the number of hosts.
    """
    state = TopologyState()
    hosts = []
    for member in client.zrangebyscore(keys.collectors, at - step, "+inf"):
        try:
            hosts.append(validate_host_id(member.decode()))
        except (SchemaError, UnicodeDecodeError):
            continue
    # 1. Per host: its latest fine and coarse snapshots, keyframe and coarse
    # snapshot at or before ``at``. (A keyframe and a coarse snapshot are
    # always written with a fine one, so none falls between the snapshot
    # shown and ``at``.)
    pipe = client.pipeline(transaction=False)
    for host_id in hosts:
        pipe.zrevrangebyscore(keys.history(host_id, "fine"), at, at - 2 * step,
                              start=0, num=1, withscores=True)
        pipe.zrevrangebyscore(keys.history(host_id, "coarse"), at,
                              at - 2 * coarse_step, start=0, num=1,
                              withscores=True)
        pipe.zrevrangebyscore(keys.history(host_id, "totals"), at, "-inf",
                              start=0, num=1, withscores=True)
        pipe.zrevrangebyscore(keys.history(host_id, "coarse"), at, "-inf",
                              start=0, num=1, withscores=True)
    first = pipe.execute()
    # 2. The counts between each host's keyframe and its snapshot, and the
    # keyframe its snapshot is stored against where that is another one (a
    # coarse snapshot from before the keyframe).
    plans = []
    pipe = client.pipeline(transaction=False)
    for i, host_id in enumerate(hosts):
        fine, coarse, frame, last_coarse = first[4 * i: 4 * i + 4]
        tier, rows = ("fine", fine) if fine else ("coarse", coarse)
        if not rows:
            continue
        blob, ts = rows[0]
        ranges = 0
        if frame:
            frame_ts = frame[0][1]
            coarse_ts = last_coarse[0][1] if last_coarse else frame_ts
            pipe.zrangebyscore(keys.history(host_id, "coarse"), f"({frame_ts}",
                               min(coarse_ts, ts))
            ranges = 1
            if tier == "fine":
                pipe.zrangebyscore(keys.history(host_id, "fine"),
                                   f"({max(coarse_ts, frame_ts)}", ts)
                ranges = 2
        try:
            own = keyframe_of(blob)
        except SchemaError:
            own = None
        other = own is not None and (not frame or own != frame[0][1])
        if other:
            pipe.zrangebyscore(keys.history(host_id, "totals"), own, own)
        plans.append((host_id, blob, frame[0][0] if frame else None, ranges,
                      other))
    later = iter(pipe.execute())
    for host_id, blob, frame_blob, ranges, other in plans:
        between = [next(later) for _ in range(ranges)]
        own_frame = next(later) if other else None
        try:
            frame = decode_keyframe(frame_blob) if frame_blob else None
            if other:
                snapshot = decode_history(
                    blob, decode_keyframe(own_frame[0]) if own_frame else None)
            else:
                snapshot = decode_history(blob, frame)
            if frame is None:
                # No keyframe (history from before them): the step's counts
                # are all there is.
                totals = {f: int(v) for f, v in
                          (snapshot.get("counts") or {}).items()}
            else:
                totals = totals_since_keyframe(
                    frame, (b for blobs in between for b in blobs))
        except (SchemaError, ValueError, TypeError, AttributeError) as exc:
            log.warning("host %s history: %s", host_id, exc)
            continue
        _apply_snapshot(state, host_id, snapshot, totals)
    return state


def _apply_snapshot(state: TopologyState, host_id: str, snapshot: dict,
                    totals: dict[str, int]) -> None:
    ts = float(snapshot["ts"])
    state.last_seen[host_id] = ts
    state.hosts[host_id] = _host_record(
        host_id, json.dumps(snapshot.get("host") or {}).encode()
    )
    state.containers[host_id] = _containers(host_id, {
        str(c.get("id", "")).encode(): json.dumps(c).encode()
        for c in snapshot.get("containers") or [] if isinstance(c, dict)
    })
    state.addrs[host_id] = {
        str(a): str(t) for a, t in (snapshot.get("addrs") or {}).items()
    }
    # In field order: an edge sums its flows' rates in the same order
    # whichever keyframe the totals started from (floats' sums depend on it).
    counts = {f: v for f, v in sorted(totals.items()) if v > 0}
    # Rates over the step the snapshot closes (the live map's are over the
    # last second; a past view's are over the step around its time).
    since = snapshot.get("since")
    span = ts - float(since) if isinstance(since, int | float) and since < ts \
        else None
    if span:
        rates = step_rates(snapshot)
    else:  # a snapshot from before ``since``: the rates it kept
        rates = dict(snapshot.get("rates") or {})
    for key, counters in _flows(host_id, counts, int).items():
        state.flows[(host_id, key)] = counters
    for key, values in _flows(host_id, rates, float).items():
        state.rates[(host_id, key)] = values


def _host_record(host_id: str, raw: bytes | None) -> HostRecord:
    if raw is None:
        return HostRecord(id=host_id, hostname=host_id)
    try:
        return HostRecord.from_json(raw)
    except SchemaError as exc:
        log.warning("host %s: %s", host_id, exc)
        return HostRecord(id=host_id, hostname=host_id)


def _containers(host_id: str, raw: dict[bytes, bytes],
                metrics: dict[bytes, bytes] | None = None
                ) -> dict[str, ContainerRecord]:
    out = {}
    metrics = metrics or {}
    for cid, text in raw.items():
        try:
            record = ContainerRecord.from_json(text)
        except SchemaError as exc:
            log.warning("host %s container %r: %s", host_id, cid, exc)
            continue
        record.host = host_id
        if cid in metrics:
            record.metrics = parse_metrics(host_id, cid, metrics[cid])
        out[record.id] = record
    return out


def parse_metrics(host_id: str, cid: bytes | str, text: bytes) -> dict:
    """A container's metrics from ``P:metrics`` (bad ones logged: none)."""
    try:
        return metrics_loads(text)
    except SchemaError as exc:
        log.warning("host %s container %r: %s", host_id, cid, exc)
        return {}


def _flows(host_id: str, raw: dict[bytes | str, bytes | str | int | float],
           kind=int, container_ids=(), ids=None) -> dict[FlowKey, dict]:
    """FlowKey -> counter -> value from flow fields: a live hash's short ones
    (the host's ``ids`` hash and ``container_ids`` resolve their short
    container ids) or canonical ones (history). Two fields of one counter (a
    hash written by two collector versions) add up."""
    flows: dict[FlowKey, dict] = defaultdict(dict)
    fields = host_flow_fields(host_id, container_ids, ids)
    for name, value in raw.items():
        try:
            key, counter = fields.parse(
                name.decode() if isinstance(name, bytes) else name)
            counters = flows[key]
            if kind is int and counter in counters:
                counters[counter] += int(value)
            else:
                counters[counter] = kind(value)
        except (SchemaError, ValueError, UnicodeDecodeError) as exc:
            log.warning("host %s: skipping flow field: %s", host_id, exc)
    return flows


def read_history(
    client: redis.Redis, keys: Keys, host_id: str, since: float,
    until: float = float("inf"),
) -> list[dict]:
    """A host's history snapshots between two times, oldest first: the fine
    tier's, after the coarse tier's where the window reaches back beyond it."""
    top = "+inf" if until == float("inf") else until
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(keys.history(host_id, "fine"), since, top, withscores=True)
    pipe.zrange(keys.history(host_id, "fine"), 0, 0, withscores=True)
    fine, oldest = pipe.execute()
    start = oldest[0][1] if oldest else float("inf")
    rows = []
    if since < start:
        coarse_top = min(until, start)
        rows = client.zrangebyscore(
            keys.history(host_id, "coarse"), since,
            "+inf" if coarse_top == float("inf") else f"({coarse_top}",
            withscores=True)
    rows = [*rows, *fine]
    frames = read_keyframes(client, keys, host_id, [b for b, _ in rows])
    snapshots = []
    for blob, _ts in rows:
        try:
            snapshots.append(decode_history(blob, frames.get(keyframe_of(blob))))
        except SchemaError as exc:
            log.warning("host %s history: %s", host_id, exc)
    return snapshots


def read_keyframes(client: redis.Redis, keys: Keys, host_id: str,
                   blobs) -> dict[float, dict]:
    """The decoded keyframes that a host's history ``blobs`` are stored
    against, by time (one read of the few kept; a bad one is left out)."""
    wanted = set()
    for blob in blobs:
        try:
            wanted.add(keyframe_of(blob))
        except SchemaError:
            continue
    wanted.discard(None)
    if not wanted:
        return {}
    rows = client.zrangebyscore(keys.history(host_id, "totals"),
                                min(wanted), max(wanted), withscores=True)
    return decode_keyframes([(b, ts) for b, ts in rows if ts in wanted], host_id)


# ------------------------------------------------- reading some hosts again
#
# The graph builder keeps every host's records between updates and re-reads
# only the hosts that reported. Records come back raw, so that an unchanged
# entry costs a bytes comparison rather than a JSON parse.


@dataclass(slots=True)
class HostKeys:
    """One host's keys as read, raw: what changed is found by comparing."""

    host: bytes | None
    containers: dict[bytes, bytes]
    addrs: dict[bytes, bytes]
    rates: dict[bytes, bytes]
    flow_fields: int  # HLEN of the flows hash: a new flow or counter grows it
    ids: dict[bytes, bytes]  # short container id -> whole id (flow fields')
    metrics: dict[bytes, bytes]  # container id -> its metrics (P:metrics)


def read_hosts(client: redis.Redis, keys: Keys, host_ids) -> dict[str, HostKeys]:
    """The records, address index, rates and flow-field count of some hosts
    (one pipeline, split per node by a cluster client); flows are read apart."""
    host_ids = list(host_ids)
    pipe = client.pipeline(transaction=False)
    for host_id in host_ids:
        pipe.get(keys.host(host_id))
        pipe.hgetall(keys.containers(host_id))
        pipe.hgetall(keys.addrs(host_id))
        pipe.hgetall(keys.rates(host_id))
        pipe.hlen(keys.flows(host_id))
        pipe.hgetall(keys.ids(host_id))
        pipe.hgetall(keys.container_metrics(host_id))
    results = pipe.execute()
    return {
        host_id: HostKeys(*results[7 * i: 7 * i + 7])
        for i, host_id in enumerate(host_ids)
    }


def read_flow_fields(
    client: redis.Redis, keys: Keys, wanted: dict[str, list[str] | None]
) -> dict[str, dict[bytes, bytes]]:
    """Flow counters of some hosts: host id -> the listed fields (None: all)."""
    pipe = client.pipeline(transaction=False)
    order = list(wanted.items())
    for host_id, fields in order:
        if fields is None:
            pipe.hgetall(keys.flows(host_id))
        else:
            pipe.hmget(keys.flows(host_id), fields)
    out = {}
    for (host_id, fields), result in zip(order, pipe.execute(), strict=True):
        if fields is None:
            out[host_id] = result
        else:
            out[host_id] = {f.encode(): v for f, v in zip(fields, result,
                                                           strict=True)
                            if v is not None}
    return out


def parse_host(host_id: str, raw: bytes | None) -> HostRecord:
    """A host record from its raw JSON (a bare record when missing or bad)."""
    return _host_record(host_id, raw)


def parse_containers(host_id: str, raw: dict[bytes, bytes],
                     metrics: dict[bytes, bytes] | None = None
                     ) -> dict[str, ContainerRecord]:
    """Container id -> record, from the raw hash and the raw metrics hash
    (bad records logged and skipped; bad metrics logged, left empty)."""
    return _containers(host_id, raw, metrics)


def parse_flows(host_id: str, raw: dict[bytes, bytes], kind=int,
                container_ids=(), ids=None) -> dict[FlowKey, dict]:
    """FlowKey -> counter -> value, from raw flow (or rate) fields; the
    host's ``ids`` hash and ``container_ids`` resolve a live hash's short
    container ids."""
    return _flows(host_id, raw, kind, container_ids, ids)
