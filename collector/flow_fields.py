"""The field names of a host's live ``flows`` and ``rates`` hashes in Redis.

Everywhere else (history snapshots, capture files, the web tier's records) a
flow field is ``collector.schema.make_flow_field``'s canonical form, which
holds the whole node id: ``container:{host}:{64-hex id}\\tout\\t...``, about
118 bytes. In the two live hashes that is what keeps them hashtables: Redis
stores a hash as a compact listpack only while every field is at most
``hash-max-listpack-value`` bytes (64 by default). So the collector writes,
and the readers of those two hashes read, a short form relative to the host
whose hash it is::

    {node}\\t{o|i}\\t{ip}\\t{port}\\t{t|u}\\t{counter code}

``node`` is ``h`` (the host itself), ``p{command}`` (a host process), or
``c{container}``, where a Docker id (64 hex digits) is cut to its first 12,
Docker's short id, unless another container of the host has the same short
id, when it stays whole; anything else (another host's node) is the whole
node id, which holds ``:`` where a short node never does. An IPv4 flow's
field is at most 42 bytes, an IPv6 one at most 66.

The collector writes every short id it uses into the host's ``ids`` hash
(short -> whole id, in the same transaction, with the flows' TTL), and never
gives a short id already there to another container: a field is read back
with that hash, so a container gone from the records keeps its id, and a
short id taken before a second container came with it keeps meaning the
first. Without an entry there (a hash lost with Redis) the host's records
resolve it, when exactly one of them starts with it; else it stays the node
``container:{host}:{short id}``: its counts are never given to the wrong
container.

The parser also takes canonical fields, so hashes written by a collector of
the version before are read as they were.

>>> cid = "3f" * 32
>>> fields = HostFlowFields("h1", [cid])
>>> key = FlowKey(schema.container_node_id("h1", cid), "out", "10.0.0.2", 80)
>>> fields.name(key, "bytes_sent")
'c3f3f3f3f3f3f\\to\\t10.0.0.2\\t80\\tt\\tbs'
>>> fields.parse(_) == (key, "bytes_sent")
True
"""

from __future__ import annotations

import functools
import logging
import re
from urllib.parse import quote, unquote

from collector import schema
from collector.schema import COUNTERS, FlowKey, SchemaError

__all__ = [
    "COUNTER_CODES",
    "HostFlowFields",
    "canonical_flow_fields",
    "host_flow_fields",
    "short_container_ids",
]

log = logging.getLogger("portolan.collector.flow_fields")

# One code per counter; append only (fields in Redis hold them).
COUNTER_CODES = {
    "connections": "c",
    "failed": "f",
    "failed_refused": "fr",
    "failed_timeout": "ft",
    "failed_unreachable": "fu",
    "failed_other": "fo",
    "accepts": "a",
    "bytes_sent": "bs",
    "bytes_received": "br",
    "datagrams_sent": "ds",
    "datagrams_received": "dr",
    "resets": "r",
    "retransmits": "rt",
    "connect_latency_us_sum": "ls",
    "connect_latency_count": "lc",
}
assert set(COUNTER_CODES) == set(COUNTERS), "every counter needs a code"
_COUNTERS_BY_CODE = {code: name for name, code in COUNTER_CODES.items()}
# The canonical field's words are read too (a hash written before).
_COUNTER_NAMES = {**_COUNTERS_BY_CODE, **{name: name for name in COUNTERS}}
_DIRECTIONS = {"o": "out", "i": "in", "out": "out", "in": "in"}
_PROTOCOLS = {"t": "tcp", "u": "udp", "tcp": "tcp", "udp": "udp"}
_DOCKER_ID = re.compile(r"^[0-9a-f]{64}$")
SHORT_ID = 12


def short_container_ids(container_ids, taken=None) -> dict[str, str]:
    """Container id -> the id its fields carry: a Docker id's first 12 hex
    digits unless that would name two of the host's containers, or ``taken``
    (short -> whole ids given out before) gives it to another.

    >>> a, b, c, d = "ab" * 32, "ab" * 6 + "cd" * 26, "ef" * 32, "12" * 32
    >>> short_container_ids([a, b, c, d, "web"], {"12" * 6: "12" * 6 + "0" * 52}
    ...                     ) == {a: a, b: b, c: "ef" * 6, d: d, "web": "web"}
    True
    """
    ids = set(container_ids)
    taken = taken or {}
    by_short: dict[str, list[str]] = {}
    for cid in ids:
        if _DOCKER_ID.match(cid):
            by_short.setdefault(cid[:SHORT_ID], []).append(cid)
    out = {cid: cid for cid in ids}
    for short, full in by_short.items():
        if (len(full) == 1 and short not in ids
                and taken.get(short, full[0]) == full[0]):
            out[full[0]] = short
    return out


class HostFlowFields:
    """Makes and parses the field names of one host's live flow hashes, given
    the ids of its containers and its ``ids`` hash (``taken``: short id ->
    whole id), which short container ids resolve against."""

    __slots__ = ("host_id", "_short", "_full", "_names", "_keys", "_host_node",
                 "_container_prefix", "_process_prefix", "_warned")

    def __init__(self, host_id: str, container_ids=(), taken=None):
        self.host_id = schema.validate_host_id(host_id)
        taken = _decoded(taken)
        current = short_container_ids(container_ids, taken)
        # Whole id -> the id its fields carry; a container gone from the
        # records keeps the short id it had.
        self._short = {**{cid: short for short, cid in taken.items()}, **current}
        self._full = {**taken, **{short: cid for cid, short in current.items()}}
        self._names: dict[tuple[FlowKey, str], str] = {}
        self._keys: dict[str, FlowKey] = {}
        self._host_node = schema.host_node_id(host_id)
        self._container_prefix = schema.container_node_id(host_id, "")
        self._process_prefix = schema.process_node_id(host_id, "")
        self._warned: set[str] = set()

    def name(self, key: FlowKey, counter: str) -> str:
        """The field that holds ``counter`` of ``key`` in the host's hashes."""
        try:
            return self._names[(key, counter)]
        except KeyError:
            pass
        if counter not in COUNTER_CODES:
            raise SchemaError(f"unknown counter {counter!r}")
        name = "\t".join((self._node_token(key.node), key.direction[0],
                          _quote_ip(key.ip), str(int(key.port)), key.proto[0],
                          COUNTER_CODES[counter]))
        self._names[(key, counter)] = name
        return name

    def parse(self, name: str) -> tuple[FlowKey, str]:
        """Inverse of ``name``; canonical fields are read too."""
        flow, _, code = name.rpartition("\t")
        counter = _COUNTER_NAMES.get(code)
        if counter is None:
            raise SchemaError(f"unknown counter in flow field {name!r}")
        key = self._keys.get(flow)
        if key is None:
            key = self._keys[flow] = self._flow_key(flow, name)
        return key, counter

    def short_ids(self) -> dict[str, str]:
        """Short id -> whole id of the containers whose fields carry a short
        id: what the host's ``ids`` hash must hold."""
        return {short: cid for cid, short in self._short.items() if short != cid}

    def canonical(self, name: str) -> str:
        """A live hash's field in the canonical form (history, captures)."""
        return schema.make_flow_field(*self.parse(name))

    def _node_token(self, node: str) -> str:
        if node == self._host_node:
            return "h"
        if node.startswith(self._container_prefix):
            cid = unquote(node[len(self._container_prefix):])
            return "c" + quote(self._short.get(cid, cid), safe="")
        if node.startswith(self._process_prefix):
            return "p" + node[len(self._process_prefix):]
        return node

    def _flow_key(self, flow: str, name: str) -> FlowKey:
        parts = flow.split("\t")
        if len(parts) != 5:
            raise SchemaError(f"invalid flow field {name!r}")
        token, direction, ip, port, proto = parts
        try:
            return FlowKey(self._node(token, name), _DIRECTIONS[direction],
                           unquote(ip), int(port), _PROTOCOLS[proto])
        except (KeyError, ValueError):
            raise SchemaError(f"invalid flow field {name!r}") from None

    def _node(self, token: str, name: str) -> str:
        if ":" in token:
            return token  # a whole node id
        kind, rest = token[:1], token[1:]
        if kind == "h" and not rest:
            return self._host_node
        if kind == "p":
            return self._process_prefix + rest
        if kind == "c" and rest:
            cid = unquote(rest)
            full = self._full.get(cid)
            if full is None and len(cid) == SHORT_ID and cid not in self._warned:
                starts = [c for c in self._short if c.startswith(cid)]
                if len(starts) > 1:
                    self._warned.add(cid)
                    log.warning(
                        "host %s: the short container id %s of flow field %r "
                        "now names %d containers; its counts stay on a node "
                        "of that short id", self.host_id, cid, name, len(starts))
            return schema.container_node_id(self.host_id, full or cid)
        raise SchemaError(f"invalid node in flow field {name!r}")


@functools.lru_cache(maxsize=4096)
def _cached_fields(host_id: str, container_ids: tuple[str, ...],
                   taken: tuple[tuple[str, str], ...]) -> HostFlowFields:
    return HostFlowFields(host_id, container_ids, dict(taken))


def host_flow_fields(host_id: str, container_ids, taken=None) -> HostFlowFields:
    """The host's ``HostFlowFields`` for these containers and ``ids`` hash
    (``taken``, str or bytes), kept while they stay the same (its made and
    parsed names are kept with it)."""
    return _cached_fields(host_id, tuple(sorted(container_ids)),
                          tuple(sorted(_decoded(taken).items())))


def _decoded(taken) -> dict[str, str]:
    if not taken:
        return {}
    return {(k.decode() if isinstance(k, bytes) else k):
            (v.decode() if isinstance(v, bytes) else v) for k, v in taken.items()}


def canonical_flow_fields(host_id: str, container_ids, raw: dict, kind=int,
                          taken=None) -> dict:
    """A live hash as read (``HGETALL``) with canonical fields and ``kind``
    values, for what keeps canonical fields (captures); a field that does not
    parse is logged and left out.

    >>> canonical_flow_fields("h1", [], {b"h\\to\\t10.0.0.2\\t53\\tu\\tds": b"3"})
    {'host:h1\\tout\\t10.0.0.2\\t53\\tudp\\tdatagrams_sent': 3}
    """
    fields = host_flow_fields(host_id, container_ids, taken)
    out: dict = {}
    for name, value in raw.items():
        try:
            field = fields.canonical(name.decode() if isinstance(name, bytes)
                                     else name)
            out[field] = (out.get(field, 0) + int(value) if kind is int
                          else kind(value))
        except (SchemaError, ValueError, UnicodeDecodeError) as exc:
            log.warning("host %s: skipping flow field: %s", host_id, exc)
    return out


def _quote_ip(ip: str) -> str:
    """An address with everything but its own characters quoted (a tab can
    never forge a separator), ``:`` kept: an IPv6 address stays 39 bytes.

    >>> _quote_ip("fe80::1"), _quote_ip("a\\tb")
    ('fe80::1', 'a%09b')
    """
    return quote(ip, safe=":.")
