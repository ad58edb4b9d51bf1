"""Reads every live host's view out of Redis into plain records.

This is the only module of the web tier that reads the collectors' keys. A
malformed entry (a collector of another version, a hand-edited key) is logged
and skipped; it never takes the rest of the map down with it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    SchemaError,
    parse_flow_field,
    validate_host_id,
)

log = logging.getLogger("portolan.topology.store")


@dataclass(slots=True)
class TopologyState:
    """All live hosts' records, merged: the input of the graph functions."""

    hosts: dict[str, HostRecord] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    containers: dict[str, dict[str, ContainerRecord]] = field(default_factory=dict)
    addrs: dict[str, str] = field(default_factory=dict)  # ip -> node id, all hosts
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
    results = pipe.execute()
    for i, (host_id, seen) in enumerate(hosts.items()):
        raw_host, raw_containers, raw_addrs, raw_flows = results[4 * i : 4 * i + 4]
        state.last_seen[host_id] = seen
        state.hosts[host_id] = _host_record(host_id, raw_host)
        state.containers[host_id] = _containers(host_id, raw_containers)
        for ip, node in raw_addrs.items():
            state.addrs[ip.decode()] = node.decode()
        for key, counters in _flows(host_id, raw_flows).items():
            state.flows[(host_id, key)] = counters
    return state


def _host_record(host_id: str, raw: bytes | None) -> HostRecord:
    if raw is None:
        return HostRecord(id=host_id, hostname=host_id)
    try:
        return HostRecord.from_json(raw)
    except SchemaError as exc:
        log.warning("host %s: %s", host_id, exc)
        return HostRecord(id=host_id, hostname=host_id)


def _containers(host_id: str, raw: dict[bytes, bytes]) -> dict[str, ContainerRecord]:
    out = {}
    for cid, text in raw.items():
        try:
            record = ContainerRecord.from_json(text)
        except SchemaError as exc:
            log.warning("host %s container %r: %s", host_id, cid, exc)
            continue
        record.host = host_id
        out[record.id] = record
    return out


def _flows(host_id: str, raw: dict[bytes, bytes]) -> dict[FlowKey, dict[str, int]]:
    flows: dict[FlowKey, dict[str, int]] = defaultdict(dict)
    for name, value in raw.items():
        try:
            key, counter = parse_flow_field(name.decode())
            flows[key][counter] = int(value)
        except (SchemaError, ValueError, UnicodeDecodeError) as exc:
            log.warning("host %s: skipping flow field: %s", host_id, exc)
    return flows
