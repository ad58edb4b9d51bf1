"""Capture files: what collectors reported, in one file that leaves the machine.

The format is specified in docs/capture-format.md: a header (magic, version,
JSON with the hosts), then blocks, each length-prefixed and CRC-32-checked,
holding a zstd-compressed msgpack list of records. This module reads and
writes it and checks every record on the way in; it imports neither Django,
bcc nor Redis, only the schema's records, so any tool may use it.

A reader never trusts a file: every length is bounded, every block checked
before any of its records is handed out, and every error names the file, the
block and what is wrong (``CaptureError``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field
from pathlib import Path

import msgpack
import zstandard

from collector.schema import (
    ContainerRecord,
    HostRecord,
    SchemaError,
    parse_address_target,
    parse_flow_field,
    plain_fields,
    validate_host_id,
)

__all__ = [
    "FORMAT_VERSION",
    "BlockInfo",
    "CaptureError",
    "CaptureReader",
    "CaptureWriter",
    "Event",
    "Header",
    "Report",
    "capture_summary",
]

MAGIC = b"\x89PTLCAP\n"  # like PNG's: a text-mode copy or a wrong file shows
FORMAT_VERSION = 1
BLOCK_SYNC = b"\xffBLK"
_HEAD = struct.Struct(">HII")  # version, header length, CRC-32 of the header
_BLOCK = struct.Struct(">4sIII")  # sync, meta length, payload length, CRC-32

# Bounds a hostile file cannot pass: lengths are read before anything is
# allocated, decompression stops at MAX_RECORDS_BYTES.
MAX_HEADER_BYTES = 1 << 20
MAX_META_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20
MAX_RECORDS_BYTES = 256 << 20
MAX_STRING = 64 << 10  # a command line may be long; nothing else comes close
MAX_COUNTER = (1 << 63) - 1  # Redis' HINCRBY range
# Times a collector could have reported at: 2001-09-09 .. 2100-01-01.
MIN_TS, MAX_TS = 1_000_000_000.0, 4_102_444_800.0
HISTORY_TIERS = ("fine", "coarse", "totals")  # totals: a keyframe
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A capture repeats the same flow fields and address targets in every report.
_flow_field = functools.lru_cache(maxsize=200_000)(parse_flow_field)


class CaptureError(ValueError):
    """A capture file that cannot be read: which file, which block, what."""

    def __init__(self, path, what: str, block: int | None = None,
                 offset: int | None = None):
        self.path, self.what, self.block, self.offset = str(path), what, block, offset
        where = "header" if block is None else f"block {block}"
        if offset is not None:
            where += f" (byte {offset})"
        super().__init__(f"{self.path}: {where}: {what}")


@dataclass(slots=True)
class Header:
    """The file's first bytes: version, hosts known when it began, free notes."""

    version: int = FORMAT_VERSION
    hosts: list[str] = field(default_factory=list)
    created: float = 0.0
    source: str = ""  # "live", "history", "synthetic", ...
    notes: dict = field(default_factory=dict)


@dataclass(slots=True)
class Report:
    """One host's report of one interval, as its collector wrote it to Redis.

    ``flows``: flow field -> what the interval added; ``rates``: the rates the
    collector wrote; ``history``: the history tiers it snapshotted with this
    report; ``base``: in a host's first report only, the counters it had before
    the capture began, so a replay reaches the same totals.
    """

    ts: float
    host: HostRecord
    containers: list[ContainerRecord] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)
    flows: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    interval: float = 1.0
    history: tuple[str, ...] = ()
    base: dict[str, int] = field(default_factory=dict)

    kind = "report"

    def to_wire(self) -> dict:
        return {
            "k": "report", "ts": self.ts, "host": plain_fields(self.host),
            "containers": [plain_fields(c) for c in self.containers],
            "addrs": self.addrs, "flows": self.flows, "rates": self.rates,
            "interval": self.interval, "history": list(self.history),
            "base": self.base,
        }


@dataclass(slots=True)
class Event:
    """One anomaly event of the analyzer (its stream entry's fields)."""

    ts: float
    fields: dict[str, str] = field(default_factory=dict)

    kind = "event"

    def to_wire(self) -> dict:
        return {"k": "event", "ts": self.ts, "fields": self.fields}


Record = Report | Event


@dataclass(slots=True)
class BlockInfo:
    """A block's place and summary, read without decompressing it."""

    index: int
    offset: int
    records: int
    first: float
    last: float
    hosts: dict[str, int]
    kinds: dict[str, int]


# ------------------------------------------------------------------- writing


class CaptureWriter:
    """Appends records to a new capture file, one block at a time.

    The file is valid after every block: a capture killed mid-block loses
    only that block, which a reader reports as truncated.
    """

    def __init__(self, path, header: Header, block_records: int = 2000,
                 level: int = 9):
        self.path = Path(path)
        self.block_records = block_records
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._pending: list[Record] = []
        self.blocks = 0
        self.records = 0
        self._file = open(self.path, "xb")  # never overwrite a capture
        body = json.dumps({
            "format": "portolan-capture", "hosts": sorted(header.hosts),
            "created": header.created, "source": header.source,
            "notes": header.notes, "compression": "zstd", "records": "msgpack",
        }, sort_keys=True).encode()
        self._file.write(MAGIC + _HEAD.pack(header.version, len(body),
                                            zlib.crc32(body)) + body)
        self._file.flush()

    def write(self, record: Record) -> None:
        self._pending.append(record)
        if len(self._pending) >= self.block_records:
            self.flush()

    def flush(self) -> None:
        """Write what is pending as one block (nothing when nothing is)."""
        if not self._pending:
            return
        records, self._pending = self._pending, []
        payload = self._compressor.compress(
            msgpack.packb([r.to_wire() for r in records], use_bin_type=True))
        hosts = Counter(r.host.id for r in records if isinstance(r, Report))
        meta = json.dumps({
            "records": len(records), "first": min(r.ts for r in records),
            "last": max(r.ts for r in records), "hosts": dict(hosts),
            "kinds": dict(Counter(r.kind for r in records)),
        }, sort_keys=True).encode()
        crc = zlib.crc32(payload, zlib.crc32(meta))
        self._file.write(_BLOCK.pack(BLOCK_SYNC, len(meta), len(payload), crc)
                         + meta + payload)
        self._file.flush()
        self.blocks += 1
        self.records += len(records)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------- reading


class CaptureReader:
    """Reads a capture file block by block; nothing is trusted, all is checked.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "doc.capture")
    >>> with CaptureWriter(path, Header(hosts=["h1"])) as w:
    ...     w.write(Report(ts=1.7e9, host=HostRecord(id="h1")))
    >>> [r.host.id for r in CaptureReader(path).records()]
    ['h1']
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise CaptureError(path, f"cannot open: {exc.strerror}") from None
        self.header = self._read_header()
        self._data_start = self._file.tell()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _error(self, what: str, block: int | None = None,
               offset: int | None = None) -> CaptureError:
        return CaptureError(self.path, what, block, offset)

    def _read_header(self) -> Header:
        start = self._file.read(len(MAGIC) + _HEAD.size)
        if not start:
            raise self._error("empty file, not a capture")
        if not start.startswith(MAGIC[: len(start)]) or len(start) < len(MAGIC):
            if start.startswith(MAGIC[: len(start)]):
                raise self._error("truncated header")
            raise self._error("not a Portolan capture file (wrong magic bytes)")
        if len(start) < len(MAGIC) + _HEAD.size:
            raise self._error("truncated header")
        version, length, crc = _HEAD.unpack_from(start, len(MAGIC))
        if version != FORMAT_VERSION:
            raise self._error(f"format version {version}; this Portolan reads "
                              f"version {FORMAT_VERSION}")
        if length > MAX_HEADER_BYTES:
            raise self._error(f"header length {length} exceeds {MAX_HEADER_BYTES}")
        body = self._file.read(length)
        if len(body) < length:
            raise self._error("truncated header")
        if zlib.crc32(body) != crc:
            raise self._error("header checksum mismatch (corrupted)")
        try:
            data = json.loads(body)
            hosts = [validate_host_id(h) for h in data["hosts"]]
            return Header(version, hosts, float(data.get("created", 0.0)),
                          _text(data.get("source", "")), data.get("notes") or {})
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"malformed header: {exc}") from None

    def _frames(self) -> Iterator[tuple[int, int, bytes, bytes | None]]:
        """(index, offset, meta, payload) of each block, checksum verified;
        payload None when only the meta is wanted (its bytes are skipped)."""
        self._file.seek(self._data_start)
        index = 0
        while True:
            offset = self._file.tell()
            frame = self._file.read(_BLOCK.size)
            if not frame:
                return
            if len(frame) < _BLOCK.size:
                raise self._error("truncated block frame", index, offset)
            sync, meta_len, payload_len, crc = _BLOCK.unpack(frame)
            if sync != BLOCK_SYNC:
                raise self._error("no block marker (corrupted)", index, offset)
            if meta_len > MAX_META_BYTES or payload_len > MAX_PAYLOAD_BYTES:
                raise self._error(f"block lengths {meta_len}/{payload_len} out "
                                  "of bounds (corrupted)", index, offset)
            body = self._file.read(meta_len + payload_len)
            if len(body) < meta_len + payload_len:
                raise self._error(f"truncated block: {len(body)} of "
                                  f"{meta_len + payload_len} bytes", index, offset)
            if zlib.crc32(body) != crc:
                raise self._error("checksum mismatch (corrupted)", index, offset)
            yield index, offset, body[:meta_len], body[meta_len:]
            index += 1

    def block_infos(self) -> Iterator[BlockInfo]:
        """Each block's summary, checked but not decompressed."""
        for index, offset, meta, _ in self._frames():
            yield self._info(index, offset, meta)

    def _info(self, index: int, offset: int, meta: bytes) -> BlockInfo:
        try:
            m = json.loads(meta)
            info = BlockInfo(index, offset, int(m["records"]), float(m["first"]),
                             float(m["last"]),
                             {validate_host_id(h): int(n)
                              for h, n in m["hosts"].items()},
                             {str(k): int(n) for k, n in m["kinds"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._error(f"malformed block summary: {exc}", index,
                              offset) from None
        return info

    def blocks(self) -> Iterator[tuple[BlockInfo, list[Record]]]:
        """Each block's summary and records, all of a block checked before it
        is handed out: a caller never gets part of a bad block."""
        decompressor = zstandard.ZstdDecompressor()
        for index, offset, meta, payload in self._frames():
            info = self._info(index, offset, meta)
            try:
                raw = decompressor.decompress(payload,
                                              max_output_size=MAX_RECORDS_BYTES)
                wire = msgpack.unpackb(raw, raw=False, strict_map_key=True)
            except (zstandard.ZstdError, ValueError, msgpack.UnpackException,
                    msgpack.ExtraData) as exc:
                raise self._error(f"undecodable records: {exc}", index,
                                  offset) from None
            if not isinstance(wire, list) or len(wire) != info.records:
                raise self._error("record count differs from the block summary",
                                  index, offset)
            records = []
            for n, item in enumerate(wire):
                try:
                    records.append(record_from_wire(item))
                except (SchemaError, ValueError, TypeError, KeyError) as exc:
                    raise self._error(f"record {n}: {exc}", index, offset) from None
            yield info, records

    def records(self) -> Iterator[Record]:
        for _, records in self.blocks():
            yield from records


def capture_summary(path) -> dict:
    """What a file holds (version, hosts, span, counts), from its header and
    block summaries only."""
    with CaptureReader(path) as reader:
        hosts: Counter = Counter()
        kinds: Counter = Counter()
        first, last, blocks = math.inf, -math.inf, 0
        for info in reader.block_infos():
            blocks += 1
            hosts.update(info.hosts)
            kinds.update(info.kinds)
            first, last = min(first, info.first), max(last, info.last)
        return {
            "version": reader.header.version, "source": reader.header.source,
            "created": reader.header.created,
            "hosts": sorted(set(reader.header.hosts) | set(hosts)),
            "reports_per_host": dict(sorted(hosts.items())),
            "records": dict(kinds), "blocks": blocks,
            "first": first if blocks else None, "last": last if blocks else None,
            "bytes": reader.path.stat().st_size,
        }


# ---------------------------------------------------------- record checking


def record_from_wire(item) -> Record:
    """A record from its decoded msgpack map, checked: a hostile or damaged
    record raises SchemaError saying which value is wrong."""
    if not isinstance(item, dict):
        raise SchemaError("not a map")
    kind = item.get("k")
    ts = _time(item.get("ts"))
    if kind == "event":
        fields = _str_map(item.get("fields", {}), "event fields")
        return Event(ts, fields)
    if kind != "report":
        raise SchemaError(f"unknown record kind {kind!r}")
    host = _dataclass(HostRecord, item.get("host"), "host")
    validate_host_id(host.id)
    containers = [_dataclass(ContainerRecord, c, "container")
                  for c in _list(item.get("containers", []), "containers")]
    addrs = _str_map(item.get("addrs", {}), "addrs")
    for target in addrs.values():
        parse_address_target(target)
    history = tuple(_list(item.get("history", []), "history"))
    if any(t not in HISTORY_TIERS for t in history):
        raise SchemaError(f"unknown history tier in {history!r}")
    interval = item.get("interval", 1.0)
    if not _number(interval) or not 0 < interval <= 86_400:
        raise SchemaError(f"interval {interval!r} out of range")
    return Report(
        ts=ts, host=host, containers=containers, addrs=addrs,
        flows=_counters(item.get("flows", {}), "flows"),
        rates=_rates(item.get("rates", {})), interval=float(interval),
        history=history, base=_counters(item.get("base", {}), "base"),
    )


def _number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _time(value) -> float:
    if not _number(value) or not MIN_TS <= value <= MAX_TS:
        raise SchemaError(f"time {value!r} out of range")
    return float(value)


def _text(value, what: str = "string") -> str:
    """A string a map can show: bounded, without control characters (the
    front end escapes the rest, markup included)."""
    if not isinstance(value, str):
        raise SchemaError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_STRING:
        raise SchemaError(f"{what}: string of {len(value)} characters")
    if _CONTROL.search(value):
        raise SchemaError(f"{what}: control character in {value[:80]!r}")
    return value


def _list(value, what: str) -> list:
    if not isinstance(value, list):
        raise SchemaError(f"{what}: expected a list")
    return value


def _str_map(value, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SchemaError(f"{what}: expected a map")
    return {_text(k, what): _text(v, what) for k, v in value.items()}


def _plain(value, what: str, depth: int = 0):
    """Nested plain data (metrics, labels, processes), every leaf checked."""
    if depth > 8:
        raise SchemaError(f"{what}: nested too deep")
    if isinstance(value, str):
        return _text(value, what)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if not _number(value):
            raise SchemaError(f"{what}: {value!r} is not a finite number")
        return value
    if isinstance(value, list):
        return [_plain(v, what, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_text(k, what): _plain(v, what, depth + 1) for k, v in value.items()}
    raise SchemaError(f"{what}: unexpected {type(value).__name__}")


@functools.cache
def _field_types(cls) -> tuple[tuple[str, type], ...]:
    """Each field of a schema record and the type of its default."""
    out = []
    for name, f in cls.__dataclass_fields__.items():
        if f.default_factory is not MISSING:
            out.append((name, type(f.default_factory())))
        elif f.default is not MISSING:
            out.append((name, type(f.default)))
        else:
            out.append((name, str))
    return tuple(out)


def _dataclass(cls, data, what: str):
    """A schema record from a map: known fields only, each of its default's
    type, every string checked."""
    if not isinstance(data, dict):
        raise SchemaError(f"{what}: expected a map")
    values = {}
    for name, expected in _field_types(cls):
        if name not in data:
            continue
        value = data[name]
        kind = type(value)
        if kind is str:
            value = _text(value, f"{what} {name}")
        elif kind in (list, dict):
            value = _plain(value, f"{what} {name}")
        if expected is float and kind is int:
            value = float(value)
        elif expected is int and kind is int and value < 0 and name != "exit_code":
            raise SchemaError(f"{what} {name}: negative {value}")
        if type(value) is not expected:
            raise SchemaError(f"{what} {name}: expected {expected.__name__}, got "
                              f"{kind.__name__}")
        if expected is float and not math.isfinite(value):
            raise SchemaError(f"{what} {name}: {value!r} is not a finite number")
        values[name] = value
    if "id" not in values:
        raise SchemaError(f"{what}: no id")
    return cls(**values)


@functools.lru_cache(maxsize=200_000)
def _flow_name(name) -> str:
    """A flow field name, checked once however often it recurs."""
    _flow_field(_text(name, "flow field"))
    return name


def _counters(value, what: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise SchemaError(f"{what}: expected a map")
    for name, count in value.items():
        _flow_name(name)
        if type(count) is not int:
            raise SchemaError(f"{what}: counter {count!r} is not an integer")
        if not 0 <= count <= MAX_COUNTER:
            raise SchemaError(f"{what}: counter {count} out of range")
    return value


def _rates(value) -> dict[str, float]:
    if not isinstance(value, dict):
        raise SchemaError("rates: expected a map")
    for name, rate in value.items():
        _flow_name(name)
        if type(rate) is int:
            rate = float(rate)
        if type(rate) is not float or not 0 <= rate < math.inf:
            raise SchemaError(f"rates: rate {rate!r} out of range")
    return {name: float(rate) for name, rate in value.items()}
