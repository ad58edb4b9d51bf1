"""History snapshots stored against the host's keyframe (formats 2 and 3).

Why: a host's snapshots mostly repeat what its keyframe already holds (the
same container records and addresses, the same long flow fields), and each
blob is compressed alone, so zstd cannot share that between them. Format 2
stores in a snapshot only what differs from the keyframe before it (the
records that changed, the fields the keyframe does not name) and its counts
as columns over the keyframe's flow table: ~5x smaller (BENCHMARKS.md,
"History memory").

Format 4 (``\x04``) is format 3 with a third column part, ``m``: the
containers' numeric metrics (``collector.container_metrics``) that moved
since the keyframe, one column a metric over the snapshot's records; such a
record is otherwise the keyframe's, stored as its index. Why: a real
container's record changes every report (its CPU, memory, byte counters), so
formats 2 and 3 stored every record in full in every snapshot, ~3 kB a fine
snapshot of 20 containers against ~0.25 kB without metrics (BENCHMARKS.md,
"History with container metrics"). Older readers refuse format 4 (they log
it as malformed and leave it out).

A blob starts with a version byte. ``\\x02``: format 2, then the time of the
keyframe it needs as a little-endian double (0: none, it stands alone), then
zstd-compressed compact JSON. ``\\x03``: format 3, the same header, then
zstd of the body's JSON without its columns (after its length, 4 bytes) and
the columns packed binary (``collector.history_columns``: snapshots 20-25 %
smaller). Format 3 is written whenever every column value packs exactly,
format 2 otherwise. Anything else is format 1 (``collector.schema``: zstd or
zlib JSON). All three are read: a rolling update leaves older ones in Redis
for the history window.

A format 2 or 3 keyframe (``P:history:{host}:totals``) stands alone: its
records, and every flow counter's total as columns over its flow table. Decoded, it is
``{"ts", "totals", "host", "containers", "addrs", "flows"}``; a format 1 one
has only ``ts`` and ``totals``, and no snapshot refers to it.

Columns: ``{"i": [flow index deltas], "<counter>": [value per flow]}``, the
flows in index order (the keyframe's table, then the snapshot's own
``flows``); an absent value is ``null``.
"""

from __future__ import annotations

import json
import logging
import math
import struct

import zstandard

from collector.history_columns import pack_columns, unpack_columns
from collector.schema import (
    RATE_COUNTERS,
    SchemaError,
    decode_snapshot,
    decode_snapshot_counts,
)

__all__ = [
    "decode_history",
    "decode_history_counts",
    "decode_keyframe",
    "decode_keyframes",
    "encode_history",
    "encode_keyframe",
    "history_flow_names",
    "keyframe_of",
    "outgrows",
    "overlay_metrics",
    "step_rates",
    "totals_since_keyframe",
]

FORMAT_2 = 2
FORMAT_3 = 3  # as format 2, its columns packed binary (collector.history_columns)
FORMAT_4 = 4  # as format 3, with the containers' metrics as columns ("m")
_KEYFRAMED = (bytes([FORMAT_2]), bytes([FORMAT_3]), bytes([FORMAT_4]))
_COLUMN_PARTS = ("c", "r")
_METRICS = "m"
_HEADER = struct.Struct("<Bd")
_LEVEL = 9
_RECORDS = ("host", "containers", "addrs")
_RATE_SET = frozenset(RATE_COUNTERS)

log = logging.getLogger("portolan.collector.history_format")


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _pack(frame_ts: float | None, body: dict) -> bytes:
    """Format 3 (4 with metric columns) where every column value packs
    exactly, else format 2."""
    parts = (*_COLUMN_PARTS, _METRICS) if _METRICS in body else _COLUMN_PARTS
    columns = pack_columns([body.get(p) for p in parts],
                           scaled=_METRICS in body)
    if columns is None:
        version, payload = FORMAT_2, _compact(body).encode()
    else:
        text = _compact({k: v for k, v in body.items()
                         if k not in parts}).encode()
        version = FORMAT_4 if _METRICS in body else FORMAT_3
        payload = struct.pack("<I", len(text)) + text + columns
    return _HEADER.pack(version, frame_ts or 0.0) + zstandard.ZstdCompressor(
        level=_LEVEL, write_content_size=False, write_checksum=False
    ).compress(payload)


def _unpack(blob: bytes) -> tuple[float | None, dict]:
    try:
        version, frame_ts = _HEADER.unpack_from(blob)
        payload = zstandard.ZstdDecompressor().decompressobj().decompress(
            blob[_HEADER.size:])
        if version in (FORMAT_3, FORMAT_4):
            parts = _COLUMN_PARTS if version == FORMAT_3 else (
                *_COLUMN_PARTS, _METRICS)
            (size,) = struct.unpack_from("<I", payload)
            body = json.loads(payload[4:4 + size])
            columns = unpack_columns(payload[4 + size:], len(parts))
            if isinstance(body, dict):
                body.update(zip(parts, columns, strict=True))
        else:
            body = json.loads(payload)
    except (struct.error, zstandard.ZstdError, ValueError) as exc:
        raise SchemaError(f"malformed history snapshot: {exc}") from None
    if not isinstance(body, dict) or "ts" not in body:
        raise SchemaError("malformed history snapshot: no timestamp")
    return frame_ts or None, body


def is_keyframed(blob: bytes) -> bool:
    """Format 2, 3 or 4: stored against a keyframe (or standing alone in
    that format), not format 1."""
    return blob[:1] in _KEYFRAMED


def keyframe_of(blob: bytes) -> float | None:
    """The time of the keyframe a snapshot needs to be read (None: none).

    >>> keyframe_of(encode_history({"ts": 5, "counts": {}}, None))
    >>> keyframe_of(b"\\x28\\xb5\\x2f\\xfd...") is None  # format 1
    True
    """
    if not is_keyframed(blob):
        return None
    try:
        return _HEADER.unpack_from(blob)[1] or None
    except struct.error:
        raise SchemaError("malformed history snapshot: short header") from None


# ------------------------------------------------------------------ columns


def _split(name: str) -> tuple[str, str]:
    flow, sep, counter = name.rpartition("\t")
    if not sep:
        raise SchemaError(f"invalid flow field {name!r}")
    return flow, counter


def _columns(values: dict, index: dict[str, int], extra: list[str]) -> dict:
    """Field -> value as columns over flow indices; flows not in ``index``
    are appended to ``extra`` (and to ``index``)."""
    by_flow: dict[int, dict[str, object]] = {}
    for name, value in values.items():
        flow, counter = _split(name)
        i = index.get(flow)
        if i is None:
            i = index[flow] = len(index)
            extra.append(flow)
        by_flow.setdefault(i, {})[counter] = value
    return _as_columns(by_flow)


def _as_columns(rows: dict[int, dict]) -> dict[str, list]:
    """Position -> name -> value as columns: ``{"i": [position deltas],
    name: [value, or None where that position has none]}``."""
    order = sorted(rows)
    cols: dict[str, list] = {"i": [b - a for a, b in zip([0, *order], order,
                                                          strict=False)]}
    for name in sorted({n for row in rows.values() for n in row}):
        cols[name] = [rows[i].get(name) for i in order]
    return cols


def _fields(cols: dict | None, flows: list[str]) -> dict:
    """Columns back to field -> value."""
    if not cols:
        return {}
    try:
        at, order = 0, []
        for step in cols["i"]:
            at += int(step)
            order.append(flows[at])
        out = {}
        for counter, values in cols.items():
            if counter == "i":
                continue
            for flow, value in zip(order, values, strict=True):
                if value is not None:
                    out[f"{flow}\t{counter}"] = value
        return out
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SchemaError(f"malformed history columns: {exc}") from None


# ------------------------------------------------------------------ keyframes


def encode_keyframe(snapshot: dict) -> tuple[bytes, dict]:
    """A keyframe (``ts``, ``totals`` and the records ``host``,
    ``containers``, ``addrs``) as stored, and as decoded: what snapshots
    are then encoded against."""
    flows = sorted({_split(f)[0] for f in snapshot.get("totals") or {}})
    index = {f: i for i, f in enumerate(flows)}
    body = {k: snapshot[k] for k in ("ts", *_RECORDS) if k in snapshot}
    body["flows"] = flows
    body["c"] = _columns(snapshot.get("totals") or {}, index, [])
    frame = dict(body, totals=dict(snapshot.get("totals") or {}))
    del frame["c"]
    return _pack(None, body), frame


def decode_keyframe(blob: bytes) -> dict:
    """A keyframe as ``encode_keyframe`` returns it (format 1: ``ts`` and
    ``totals`` only)."""
    if not is_keyframed(blob):
        return decode_snapshot(blob)
    _, body = _unpack(blob)
    flows = body.get("flows")
    if not isinstance(flows, list):
        raise SchemaError("malformed keyframe: no flow table")
    frame = {k: body[k] for k in ("ts", *_RECORDS) if k in body}
    frame["flows"] = flows
    frame["totals"] = _fields(body.get("c"), flows)
    return frame


def decode_keyframes(rows, host_id: str) -> dict[float, dict]:
    """A host's keyframe rows, ``(blob, time)``, decoded by time. A bad one
    is logged and left out: the snapshots stored against it then fail alone,
    naming the keyframe they need, and the rest of the history still reads."""
    frames = {}
    for blob, ts in rows:
        try:
            frames[ts] = decode_keyframe(blob)
        except SchemaError as exc:
            log.warning("host %s keyframe at %s: %s", host_id, ts, exc)
    return frames


def outgrows(frame: dict | None, fields) -> bool:
    """Whether a snapshot of these flow ``fields`` (counts and rates) has
    outgrown the keyframe it would be stored against: it names at least 8
    flows the keyframe lacks, and at least as many as the keyframe holds.

    Why: such flows are written by name in every snapshot until the next
    keyframe. A host that starts with no totals writes a keyframe with an
    empty flow table, so its snapshots would name every flow for the first
    keyframe period (10 min, ~2.5x the bytes of a snapshot against a full
    table). A host whose flows merely change a little is not worth a keyframe.

    >>> outgrows({"flows": []}, [f"f{i}\\tpackets" for i in range(8)])
    True
    >>> outgrows({"flows": [f"f{i}" for i in range(20)]},
    ...          [f"g{i}\\tpackets" for i in range(10)])
    False
    """
    known = frame["flows"] if frame is not None else ()
    missing = {_split(f)[0] for f in fields}.difference(known)
    return len(missing) >= max(8, len(known))


# ------------------------------------------------------------------ snapshots


def encode_history(snapshot: dict, frame: dict | None) -> bytes:
    """A history snapshot (``ts``, ``since``, records, ``counts``,
    ``rates``) stored against ``frame`` (a decoded keyframe; None: alone).

    >>> blob, frame = encode_keyframe({"ts": 1, "totals": {"a\\tx": 4},
    ...     "containers": [{"id": "c"}], "addrs": {}, "host": {"id": "h"}})
    >>> snap = {"ts": 6, "since": 1, "containers": [{"id": "c"}], "addrs": {},
    ...         "host": {"id": "h"}, "counts": {"a\\tx": 2}, "rates": {}}
    >>> decode_history(encode_history(snap, frame), frame) == snap
    True
    """
    flows = list(frame["flows"]) if frame else []
    index = {f: i for i, f in enumerate(flows)}
    extra: list[str] = []
    body = {"ts": snapshot["ts"], "since": snapshot.get("since")}
    body["c"] = _columns(snapshot.get("counts") or {}, index, extra)
    if _span(body) is None:
        # No step to take rates over (a tier's first snapshot): the last
        # report's. Otherwise none are stored: ``step_rates``.
        body["r"] = _columns(snapshot.get("rates") or {}, index, extra)
    if extra:
        body["flows"] = extra
    for name in _RECORDS:
        if name not in snapshot:
            continue
        value = snapshot[name]
        if frame is None or name not in frame:
            body[name] = value
        elif name == "containers":
            patch, rows = _containers_patch(value, frame["containers"])
            if patch is not None:
                body[name] = patch
            if rows:
                body[_METRICS] = rows
        elif value != frame[name]:
            body[name] = value
    return _pack(frame["ts"] if frame else None, body)


def _is_metric(name, value) -> bool:
    return name != "i" and (type(value) is int or (
        type(value) is float and math.isfinite(value)))


def _numbers(record) -> dict:
    """A record's numeric metrics (name -> int or finite float)."""
    metrics = record.get("metrics") if isinstance(record, dict) else None
    if not isinstance(metrics, dict):
        return {}
    return {k: v for k, v in metrics.items() if _is_metric(k, v)}


def _shape(record) -> str:
    """A record as JSON with its numeric metrics' values left out: two
    records of one shape differ at most in those values."""
    numbers = _numbers(record)
    if numbers:
        record = {**record, "metrics": {
            k: ("#" if k in numbers else v) for k, v in record["metrics"].items()}}
    return _compact(record)


def _containers_patch(records: list, base: list) -> tuple[list | None, dict]:
    """Records against the keyframe's: an index for one of the same shape
    (and the same numeric metrics by name), the record where it differs
    (None: all the keyframe's, in the same order, metrics and all); and the
    metric values that moved since the keyframe, as columns over the
    records' positions (``{"i": [position deltas], metric: [value, or None
    where it did not move]}``; empty: none moved). A whole number that was
    whole in the keyframe too is stored as its change."""
    where: dict[str, int] = {}
    for i, r in enumerate(base):
        where.setdefault(_shape(r), i)
    patch, moved = [], {}
    for pos, record in enumerate(records):
        i = where.get(_shape(record))
        numbers = _numbers(record)
        if i is None or numbers.keys() != (old := _numbers(base[i])).keys():
            patch.append(record)
            continue
        patch.append(i)
        # A whole number is stored as its change since the keyframe (the
        # byte counters' is a byte narrower than they are); any other value
        # as it is.
        row = {k: v - old[k] if type(v) is type(old[k]) is int else v
               for k, v in numbers.items()
               if not (v == old[k] and type(v) is type(old[k]))}
        if row:
            moved[pos] = row
    rows = _as_columns(moved) if moved else {}
    if not rows and patch == list(range(len(base))):
        return None, rows
    return patch, rows


def overlay_metrics(records: list, rows: dict | None) -> list:
    """Records with the metric values ``_containers_patch`` found moved put
    over the keyframe's.

    >>> overlay_metrics([{"id": "a", "metrics": {"cpu_cores": 0.1, "pids": 5}}],
    ...                 {"i": [0], "cpu_cores": [0.25], "pids": [-2]})
    [{'id': 'a', 'metrics': {'cpu_cores': 0.25, 'pids': 3}}]
    """
    if not rows or not rows.get("i"):
        return records
    out = list(records)
    names = [n for n in rows if n != "i"]
    pos = 0
    for row, delta in enumerate(rows["i"]):
        pos += delta
        if not 0 <= pos < len(out):
            raise IndexError(f"metrics of record {pos}, of {len(out)}")
        metrics = dict(out[pos]["metrics"])
        for name in names:
            value = rows[name][row]
            if value is None:
                continue
            old = metrics.get(name)
            metrics[name] = value + old if type(value) is type(old) is int \
                else value
        out[pos] = {**out[pos], "metrics": metrics}
    return out


def _check_frame(blob: bytes, frame_ts: float | None, frame: dict | None) -> None:
    if frame_ts is not None and (frame is None or frame.get("ts") != frame_ts
                                 or "flows" not in frame):
        raise SchemaError(f"history snapshot needs the keyframe of {frame_ts}")


def history_flow_names(blob: bytes) -> list[str]:
    """The flows a format 2 or 3 snapshot names itself (those its keyframe
    lacks)."""
    if not is_keyframed(blob):
        raise SchemaError("not a format 2 or 3 history snapshot")
    return list(_unpack(blob)[1].get("flows") or [])


def decode_history(blob: bytes, frame: dict | None = None) -> dict:
    """A history snapshot as written (format 1 to 4); a format 2, 3 or 4
    one needs the decoded keyframe it names (``keyframe_of``)."""
    if not is_keyframed(blob):
        return decode_snapshot(blob)
    frame_ts, body = _unpack(blob)
    _check_frame(blob, frame_ts, frame)
    flows = [*(frame["flows"] if frame_ts else ()), *(body.get("flows") or ())]
    out = {"ts": body["ts"], "since": body.get("since")}
    for name in _RECORDS:
        if name in body:
            out[name] = body[name]
        elif frame_ts is not None and name in frame:
            out[name] = frame[name]
    try:
        if frame_ts is not None and isinstance(out.get("containers"), list):
            out["containers"] = [frame["containers"][r] if isinstance(r, int)
                                 else r for r in out["containers"]]
        if body.get(_METRICS) and isinstance(out.get("containers"), list):
            out["containers"] = overlay_metrics(out["containers"], body[_METRICS])
    except (IndexError, TypeError, KeyError, AttributeError) as exc:
        raise SchemaError(f"malformed history records: {exc}") from None
    out["counts"] = _fields(body.get("c"), flows)
    # Rates stored (older snapshots, or a tier's first), else over the step.
    out["rates"] = (_fields(body["r"], flows) if body.get("r")
                    else step_rates(out))
    return out


def _span(snapshot: dict) -> float | None:
    ts, since = snapshot.get("ts"), snapshot.get("since")
    if (isinstance(ts, int | float) and isinstance(since, int | float)
            and since < ts):
        return ts - since
    return None


def step_rates(snapshot: dict) -> dict[str, float]:
    """Per-second rates over the step a snapshot closes (``since`` to
    ``ts``): its counts over the step's length, as past views show them.
    Why: storing the last report's rates beside the counts cost ~15 % of a
    snapshot (BENCHMARKS.md, "History in listpacks"); a step's mean is what
    a past moment's rate means at that step's resolution anyway.

    >>> step_rates({"ts": 10.0, "since": 5.0, "counts": {
    ...     "f\\tconnections": 3, "f\\tconnect_latency_us_sum": 900}})
    {'f\\tconnections': 0.6}
    >>> step_rates({"ts": 10.0, "since": None, "counts": {"f\\tconnections": 3}})
    {}
    """
    span = _span(snapshot)
    if span is None:
        return {}
    return {f: round(int(v) / span, 3)
            for f, v in (snapshot.get("counts") or {}).items()
            if v and f.rpartition("\t")[2] in _RATE_SET}


def decode_history_counts(blob: bytes, frame: dict | None = None) -> dict:
    """A history snapshot's ``counts`` only: what summing many needs."""
    if not is_keyframed(blob):
        return decode_snapshot_counts(blob)
    frame_ts, body = _unpack(blob)
    _check_frame(blob, frame_ts, frame)
    flows = [*(frame["flows"] if frame_ts else ()), *(body.get("flows") or ())]
    return _fields(body.get("c"), flows)


def totals_since_keyframe(frame: dict, blobs) -> dict[str, int]:
    """Every flow's totals after ``blobs``: the keyframe's totals plus the
    counts of the history snapshots stored since it, as past views and past
    captures both sum them."""
    totals = {f: int(v) for f, v in (frame.get("totals") or {}).items()}
    for blob in blobs:
        for f, v in decode_history_counts(blob, frame).items():
            totals[f] = totals.get(f, 0) + int(v)
    return totals
