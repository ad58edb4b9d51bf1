"""The one data contract between collectors and the web tier.

Record types, node ids and Redis key names are made here, by paired
make/parse functions, and nowhere else. This module imports neither Django
nor bcc, so both sides (and the tests) can use it.

Redis layout (``P`` is the key prefix, ``portolan`` by default)
-----------------------------------------------------------------

The braces are literal: they are Redis Cluster hash tags. All of one host's
keys share the tag ``{host}`` and so one slot, so that the collector's one
transaction per report may write them all; the analyzer's keys share
``{anomaly}``. ``P:collectors`` and ``P:changes`` stand alone: they are
written next to a transaction, never inside one. Reads that span hosts list
them from ``P:collectors`` (never SCAN) and read each host's keys in a
pipeline, which the cluster client splits per node. The same names serve one
Redis.

``P:collectors``            ZSET  host id -> unix time of its last report
``P:host:{host}``           STR   JSON host attributes (name, kernel, mode); TTL
``P:containers:{host}``     HASH  container id -> JSON container attributes
                                   but its metrics; TTL
``P:metrics:{host}``        HASH  container id -> JSON of its latest cgroup
                                   metrics, apart from the record: they move
                                   every report, the rest seldom, and the
                                   graph builder parses a record only when it
                                   changed. Collectors before it kept them in
                                   the record; readers merge both
                                   (``container_from_keys``); TTL
``P:addrs:{host}``          HASH  address -> node id owning it on that host: a bare
                                   IP (a container's, or the host's own) or
                                   ``ip:port/proto`` for a published port. The
                                   global address index is the union over live
                                   hosts; TTL
``P:flows:{host}``          HASH  flow field -> integer counter, only ever grown
                                   with HINCRBY so that concurrent writers never
                                   lose an update; TTL refreshed on every write
``P:rates:{host}``          HASH  flow field -> per-second rate over the last
                                   interval (float), replaced on every report
``P:ids:{host}``            HASH  short container id -> whole id, for the short
                                   ids the two hashes above hold
                                   (``collector.flow_fields``); TTL as flows
``P:history:{host}:fine``   ZSET  score unix time, member zstd-compressed JSON
                                   snapshot of the host (``ts``; records; the
                                   step's ``counts`` since ``since``, the previous
                                   snapshot; the latest ``rates``) every
                                   ``HISTORY_STEP`` s, kept ``HISTORY_FINE`` s
``P:history:{host}:coarse`` ZSET  the same every ``HISTORY_COARSE_STEP`` s, kept
                                   for the whole history window (always written
                                   with a fine one, at the same time)
``P:history:{host}:totals`` ZSET  score unix time, member a compressed
                                   ``{"ts", "totals"}``: every flow counter as
                                   the flows hash held it, written with a coarse
                                   snapshot every keyframe period (10 min); the
                                   host's records with it. The snapshots of the
                                   two sets above are stored against the
                                   keyframe before them (format 2,
                                   ``collector.history_format``)
``P:{anomaly}:status``      HASH  target -> JSON status and reasons (analyzer); TTL
``P:{anomaly}:causes``      STR   JSON likely-cause ranking (analyzer); TTL
``P:{anomaly}:events``      STREAM anomaly started/changed/ended, capped
``P:{anomaly}:history``     ZSET  score unix time, member a compressed
                                   ``{"ts", "statuses", "causes"}``: the analysis
                                   when it changed (and a minute after the last),
                                   kept for the history window
``P:{anomaly}:lock``        STR   the one active analyzer's id; TTL
``P:{anomaly}:failures``    HASH  ``count:<check>`` -> steps a rule check raised
                                   in, ``last:<check>`` -> JSON ``{"rules",
                                   "error_type", "error", "ts"}`` of its last
                                   failure (webapp.anomalies.failures); TTL
``P:applied:{host}``        STR   id of the last flow batch written (exactly-once
                                   counting across lost replies)
``P:changes``               PUBSUB JSON ``{"host": ..., "ts": ...}`` after each
                                   report, so the web tier rebuilds only then

A flow field is ``{node}\\t{direction}\\t{ip}\\t{port}\\t{proto}\\t{counter}``:
``direction`` is ``out`` (``node`` connected to ``ip:port``) or ``in``
(``node`` accepted a connection from ``ip`` on its own ``port``).
That is the canonical flow field (history snapshots, capture files); the live
``flows`` and ``rates`` hashes hold a short form of it relative to their host,
made and parsed by ``collector.flow_fields`` alone.

Node ids are ``kind:part:part``; every part is percent-quoted so that a hostile
container name or command can never forge a separator.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import quote, unquote

import zstandard

try:  # the web extra: the graph builder parses every changed record each second
    import orjson
except ImportError:  # a collector alone (its image has no orjson): the stdlib
    orjson = None

__all__ = [
    "COUNTERS",
    "RATE_COUNTERS",
    "ContainerRecord",
    "FlowKey",
    "HostRecord",
    "SchemaError",
    "Keys",
    "container_from_keys",
    "container_node_id",
    "decode_snapshot",
    "decode_snapshot_counts",
    "encode_snapshot",
    "external_node_id",
    "host_node_id",
    "loopback_address",
    "make_address_target",
    "make_flow_field",
    "metrics_loads",
    "parse_address_target",
    "published_address",
    "parse_flow_field",
    "parse_node_id",
    "process_node_id",
    "validate_host_id",
]

# Counters kept per flow. The eBPF tracer and the /proc fallback fill the same
# names; the graph sums them.
COUNTERS = (
    "connections",  # successful connects (client side)
    "failed",  # all failed connects
    "failed_refused",
    "failed_timeout",
    "failed_unreachable",
    "failed_other",
    "accepts",  # connections accepted (server side)
    "bytes_sent",
    "bytes_received",
    "datagrams_sent",
    "datagrams_received",
    "resets",
    "retransmits",
    "connect_latency_us_sum",
    "connect_latency_count",
)

# Counters that also get a per-second rate on edges (``{name}_per_s``).
RATE_COUNTERS = (
    "connections",
    "failed",
    "accepts",
    "bytes_sent",
    "bytes_received",
    "datagrams_sent",
    "datagrams_received",
    "resets",
    "retransmits",
)

DIRECTIONS = ("out", "in")
PROTOCOLS = ("tcp", "udp")

_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class SchemaError(ValueError):
    """A record, id or key that does not follow the schema."""


def validate_host_id(host_id: str) -> str:
    """Return ``host_id`` if it is a usable host id, else raise SchemaError."""
    if not isinstance(host_id, str) or not _HOST_ID.match(host_id):
        raise SchemaError(
            f"invalid host id {host_id!r}: use letters, digits, '.', '_' or '-'"
        )
    return host_id


def _q(part: str) -> str:
    return quote(str(part), safe="")


@functools.lru_cache(maxsize=200_000)
def host_node_id(host_id: str) -> str:
    return f"host:{_q(validate_host_id(host_id))}"


@functools.lru_cache(maxsize=200_000)
def container_node_id(host_id: str, container_id: str) -> str:
    return f"container:{_q(validate_host_id(host_id))}:{_q(container_id)}"


def process_node_id(host_id: str, command: str) -> str:
    """A host process outside any container, grouped by its command name."""
    return f"process:{_q(validate_host_id(host_id))}:{_q(command)}"


def external_node_id(address: str) -> str:
    return f"external:{_q(address)}"


@functools.lru_cache(maxsize=200_000)
def service_node_id(owner_node_id: str, port: int, proto: str = "tcp") -> str:
    """A listening port of a container or process: ``service:{owner}:{port}/{proto}``.

    The owner id is quoted whole so that it stays one part.
    """
    return f"service:{_q(owner_node_id)}:{int(port)}{'/' + proto if proto else ''}"


_NODE_KINDS = {"host": 1, "container": 2, "process": 2, "external": 1, "service": 2}


@functools.lru_cache(maxsize=200_000)
def parse_node_id(node_id: str) -> tuple[str, tuple[str, ...]]:
    """Split a node id into its kind and unquoted parts.

    >>> parse_node_id(container_node_id("h1", "abc"))
    ('container', ('h1', 'abc'))
    """
    kind, _, rest = node_id.partition(":")
    if kind not in _NODE_KINDS or not rest:
        raise SchemaError(f"invalid node id {node_id!r}")
    parts = tuple(unquote(p) for p in rest.split(":"))
    if len(parts) != _NODE_KINDS[kind]:
        raise SchemaError(f"invalid node id {node_id!r}")
    return kind, parts


def host_of_node(node_id: str) -> str | None:
    """The host id a node belongs to, or None for external endpoints."""
    kind, parts = parse_node_id(node_id)
    if kind == "external":
        return None
    if kind == "service":
        return host_of_node(parts[0])
    return parts[0]


class _FlowKeyFields(NamedTuple):
    node: str
    direction: str
    ip: str
    port: int
    proto: str = "tcp"


class FlowKey(_FlowKeyFields):
    """One aggregated endpoint pair as seen from ``node`` on this host.

    A tuple, not a dataclass: the graph builder hashes and compares flow keys
    millions of times a round (dict keys, alone and inside ``(host, key)``),
    and a tuple's hash and equality run in C (a dataclass's in Python: a
    quarter of a 500-host round's CPU when every flow changes).

    >>> key = FlowKey("process:h1:curl", "out", "10.0.0.2", 80)
    >>> key.port, key.proto
    (80, 'tcp')
    >>> FlowKey("process:h1:curl", "up", "10.0.0.2", 80)
    Traceback (most recent call last):
    ...
    collector.schema.SchemaError: invalid flow direction 'up'
    """

    __slots__ = ()

    def __new__(cls, node: str, direction: str, ip: str, port: int,
                proto: str = "tcp") -> FlowKey:
        if direction not in DIRECTIONS:
            raise SchemaError(f"invalid flow direction {direction!r}")
        if proto not in PROTOCOLS:
            raise SchemaError(f"invalid flow protocol {proto!r}")
        if not 0 <= int(port) <= 65535:
            raise SchemaError(f"invalid port {port!r}")
        parse_node_id(node)
        return super().__new__(cls, node, direction, ip, port, proto)


def published_address(ip: str, port: int, proto: str = "tcp") -> str:
    """The address-index entry of a published port: ``ip:port/proto``.

    >>> published_address("192.0.2.1", 8080)
    '192.0.2.1:8080/tcp'
    """
    return f"{ip}:{int(port)}/{proto}"


def loopback_address(host_id: str, port: int, proto: str = "tcp") -> str:
    """The address-index entry of a port published on a host's loopback.

    Loopback addresses mean something only on their own host, so the host id is
    part of the entry.
    """
    return f"loopback@{validate_host_id(host_id)}:{int(port)}/{proto}"


def make_address_target(node_id: str, port: int | None = None) -> str:
    """An address-index value: the owning node, and for a published port the
    container port it forwards to (``#`` never occurs in a quoted node id)."""
    return node_id if port is None else f"{node_id}#{int(port)}"


@functools.lru_cache(maxsize=200_000)
def parse_address_target(value: str) -> tuple[str, int | None]:
    """Inverse of make_address_target.

    >>> parse_address_target(make_address_target("container:h:c", 80))
    ('container:h:c', 80)
    """
    node, sep, port = value.partition("#")
    parse_node_id(node)
    if not sep:
        return node, None
    try:
        return node, int(port)
    except ValueError:
        raise SchemaError(f"invalid address target {value!r}") from None


def make_flow_field(key: FlowKey, counter: str) -> str:
    if counter not in COUNTERS:
        raise SchemaError(f"unknown counter {counter!r}")
    return "\t".join(
        (key.node, key.direction, _q(key.ip), str(int(key.port)), key.proto, counter)
    )


def parse_flow_field(field_name: str) -> tuple[FlowKey, str]:
    parts = field_name.split("\t")
    if len(parts) != 6:
        raise SchemaError(f"invalid flow field {field_name!r}")
    node, direction, ip, port, proto, counter = parts
    if counter not in COUNTERS:
        raise SchemaError(f"unknown counter in flow field {field_name!r}")
    try:
        port_number = int(port)
    except ValueError:
        raise SchemaError(f"invalid port in flow field {field_name!r}") from None
    return FlowKey(node, direction, unquote(ip), port_number, proto), counter


def encode_snapshot(snapshot: dict) -> bytes:
    """A history snapshot as stored: compact JSON, zstd-compressed, its
    ``counts`` first (``decode_snapshot_counts`` reads them alone)."""
    rest = {k: v for k, v in snapshot.items() if k != "counts"}
    body = _compact(rest)
    if "counts" in snapshot:
        body = (_COUNTS_FIRST + _compact(snapshot["counts"])
                + ("," + body[1:] if rest else "}"))
    return _zstd().compress(body.encode())


# zstd level 9: -17 % against zlib 6 on a fleet host's snapshot, at the same
# CPU (BENCHMARKS.md, "Fleet scale"). Blobs written before are zlib: they are
# told apart by the zstd frame's magic number, which no zlib stream starts with.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_LEVEL = 9
_compressors = threading.local()


def _zstd() -> zstandard.ZstdCompressor:
    """This thread's compressor (a ZstdCompressor is not thread-safe)."""
    try:
        return _compressors.zstd
    except AttributeError:
        _compressors.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        return _compressors.zstd


def _decompress(blob: bytes) -> bytes:
    """A history blob's JSON: zstd, or zlib as written before.

    >>> _decompress(zlib.compress(b'{"ts":1}')) == _decompress(encode_snapshot(
    ...     {"ts": 1}))
    True
    """
    if blob[:4] == _ZSTD_MAGIC:
        try:
            return zstandard.ZstdDecompressor().decompress(blob)
        except zstandard.ZstdError as exc:
            raise zlib.error(str(exc)) from None
    return zlib.decompress(blob)


_COUNTS_FIRST = '{"counts":'
_DECODER = json.JSONDecoder()


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def decode_snapshot(blob: bytes) -> dict:
    try:
        data = json.loads(_decompress(blob))
    except (zlib.error, ValueError) as exc:
        raise SchemaError(f"malformed history snapshot: {exc}") from None
    if not isinstance(data, dict) or "ts" not in data:
        raise SchemaError("malformed history snapshot: no timestamp")
    return data


def decode_snapshot_counts(blob: bytes) -> dict:
    """A history snapshot's ``counts`` only, without parsing its records:
    what summing many snapshots needs.

    >>> decode_snapshot_counts(encode_snapshot({"ts": 1, "counts": {"f": 2}}))
    {'f': 2}
    """
    try:
        text = _decompress(blob).decode()
        if text.startswith(_COUNTS_FIRST):
            counts = _DECODER.raw_decode(text, len(_COUNTS_FIRST))[0]
        else:  # written before counts came first
            counts = json.loads(text).get("counts") or {}
    except (zlib.error, ValueError, AttributeError) as exc:
        raise SchemaError(f"malformed history snapshot: {exc}") from None
    if not isinstance(counts, dict):
        raise SchemaError("malformed history snapshot: counts are not a map")
    return counts


@dataclass(slots=True)
class Keys:
    """Redis key names under one prefix."""

    prefix: str = "portolan"

    def __post_init__(self):
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.prefix):
            raise SchemaError(f"invalid Redis key prefix {self.prefix!r}")

    @staticmethod
    def _tag(host_id: str) -> str:
        """A host's hash tag: Redis Cluster keeps all of a host's keys in one
        slot, so one transaction can write them (host ids hold no braces)."""
        return f"{{{validate_host_id(host_id)}}}"

    @property
    def collectors(self) -> str:
        return f"{self.prefix}:collectors"

    @property
    def changes(self) -> str:
        return f"{self.prefix}:changes"

    def host(self, host_id: str) -> str:
        return f"{self.prefix}:host:{self._tag(host_id)}"

    def containers(self, host_id: str) -> str:
        return f"{self.prefix}:containers:{self._tag(host_id)}"

    def addrs(self, host_id: str) -> str:
        return f"{self.prefix}:addrs:{self._tag(host_id)}"

    def flows(self, host_id: str) -> str:
        return f"{self.prefix}:flows:{self._tag(host_id)}"

    def rates(self, host_id: str) -> str:
        return f"{self.prefix}:rates:{self._tag(host_id)}"

    def history(self, host_id: str, resolution: str) -> str:
        if resolution not in ("fine", "coarse", "totals"):
            raise SchemaError(f"unknown history resolution {resolution!r}")
        return f"{self.prefix}:history:{self._tag(host_id)}:{resolution}"

    def anomaly(self, part: str) -> str:
        """The analyzer's keys: status, causes, events, lock, history, failures
        (see webapp.anomalies)."""
        if part not in ("status", "causes", "events", "lock", "history", "failures"):
            raise SchemaError(f"unknown anomaly key {part!r}")
        return f"{self.prefix}:{{anomaly}}:{part}"

    def applied(self, host_id: str) -> str:
        return f"{self.prefix}:applied:{self._tag(host_id)}"

    def ids(self, host_id: str) -> str:
        return f"{self.prefix}:ids:{self._tag(host_id)}"

    def container_metrics(self, host_id: str) -> str:
        return f"{self.prefix}:metrics:{self._tag(host_id)}"


@functools.cache
def _field_defaults(cls) -> dict:
    """A record class's fields that have defaults, and those defaults."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def record_loads(text: str | bytes):
    """A stored record's JSON: orjson's speed where it is installed (the
    builder parses every reporting host's changed records each second, all
    of them when their metrics move), the standard library's leniency where
    orjson refuses (``NaN``, integers past 64 bits) or is absent (the
    collector's image).

    >>> record_loads('{"a": NaN}')["a"] != record_loads('{"a": NaN}')["a"]
    True
    """
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def record_json(record, without=()) -> str:
    """A record as stored in Redis: compact JSON without the fields that hold
    their defaults (``from_json`` puts them back), about half the bytes of
    every field spelled out, for every container of the fleet.

    >>> record_json(ContainerRecord(id="c1", name="web", state="running"))
    '{"id":"c1","name":"web","state":"running"}'
    >>> ContainerRecord.from_json(_).labels
    {}
    """
    defaults = _field_defaults(type(record))
    return json.dumps(
        {k: v for k, v in plain_fields(record).items()
         if k not in without and (k not in defaults or v != defaults[k]
                                  or type(v) is not type(defaults[k]))},
        sort_keys=True, separators=(",", ":"))


def plain_fields(record) -> dict:
    """A dataclass's fields as a dict, for records whose fields are plain data.

    ``dataclasses.asdict`` recurses and deep-copies every value; the collector
    encodes its records every second, and that copy was most of the cost. The
    dict shares the record's lists and dicts: encode it, do not mutate it.
    """
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


@dataclass(slots=True)
class ContainerRecord:
    """What one host knows about one container."""

    id: str
    name: str
    image: str = ""
    state: str = "unknown"  # Docker's: created, running, paused, restarting, exited
    exit_code: int = 0
    host: str = ""
    ips: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)  # listening ports seen
    published: list[dict] = field(default_factory=list)  # {ip, port, target, proto}
    metrics: dict = field(default_factory=dict)  # latest cgroup metrics
    processes: list[dict] = field(default_factory=list)  # {pid, command, user, port}
    pid: int = 0
    started_at: str = ""
    command: str = ""
    compose_project: str = ""
    compose_service: str = ""
    k8s_pod: str = ""
    k8s_namespace: str = ""
    host_network: bool = False  # shares the host's network namespace

    def to_dict(self) -> dict:
        return plain_fields(self)

    def to_json(self) -> str:
        return record_json(self)

    def identity_json(self) -> str:
        """The record as ``P:containers`` holds it: all but its metrics.

        >>> ContainerRecord(id="c1", name="web", metrics={"pids": 3}).identity_json()
        '{"id":"c1","name":"web"}'
        """
        return record_json(self, without=("metrics",))

    def metrics_json(self) -> str:
        """Its metrics as ``P:metrics`` holds them."""
        return json.dumps(self.metrics, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ContainerRecord:
        try:
            data = record_loads(text)
            return cls(**{k: data[k] for k in cls.__slots__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"malformed container record: {exc}") from None

    @property
    def status(self) -> str:
        """Map Docker's state onto the map's status scale."""
        if self.state == "running":
            return "ok"
        if self.state in ("restarting", "paused", "created"):
            return "warning"
        if self.state in ("exited", "dead") and self.exit_code != 0:
            return "critical"
        return "stopped"


def container_from_keys(text: str | bytes,
                        metrics: str | bytes | None = None) -> ContainerRecord:
    """A container record as its host's keys hold it: ``text`` from
    ``P:containers``, ``metrics`` from ``P:metrics`` (None where that has no
    entry: a collector from before kept them in the record, which then
    stands as it is).

    >>> c = ContainerRecord(id="c1", name="web", metrics={"pids": 3})
    >>> container_from_keys(c.identity_json(), c.metrics_json()) == c
    True
    >>> container_from_keys(c.to_json()).metrics
    {'pids': 3}
    """
    record = ContainerRecord.from_json(text)
    if metrics is not None:
        record.metrics = metrics_loads(metrics)
    return record


def metrics_loads(text: str | bytes) -> dict:
    """A container's metrics as ``P:metrics`` holds them.

    >>> metrics_loads("[1]")
    Traceback (most recent call last):
    ...
    collector.schema.SchemaError: malformed container metrics: not an object
    """
    try:
        metrics = record_loads(text)
    except ValueError as exc:
        raise SchemaError(f"malformed container metrics: {exc}") from None
    if not isinstance(metrics, dict):
        raise SchemaError("malformed container metrics: not an object")
    return metrics


@dataclass(slots=True)
class HostRecord:
    """One collector's host: identity and how it collects."""

    id: str
    hostname: str = ""
    kernel: str = ""
    mode: str = ""  # "ebpf" or "procfs"
    mode_reason: str = ""  # why eBPF is not in use, when it is not
    labels: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # memory, load, cpus, disk
    # Its processes on the map: {node (a process node id), pids, cmdline}.
    processes: list[dict] = field(default_factory=list)
    # Set only by ``manage.py replay``: {file, recorded_at (unix time the
    # collector reported this), offset (seconds added to recorded times)}.
    replay: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return plain_fields(self)

    def to_json(self) -> str:
        return record_json(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> HostRecord:
        try:
            data = record_loads(text)
            return cls(**{k: data[k] for k in cls.__slots__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise SchemaError(f"malformed host record: {exc}") from None
