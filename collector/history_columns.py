"""History columns as packed binary (history format 3), not JSON text.

Why: most of a history snapshot is numbers, counts and rates in columns
(``collector.history_format``), and zstd over their decimal text spends
~2.6 bytes on a five-digit count. Here each column is stored as fixed-width
little-endian integers split into byte planes (every value's low byte, then
every value's next byte...), which zstd compresses better than the digits:
on the fleet bench's world a fine snapshot is 25 % smaller, a coarse one 20 %
(BENCHMARKS.md, "History memory, format 3 and the early keyframe").

A column is ints (``type(v) is int``) or rates (floats that are whole, or
exact thousandths as ``collector.reporter.flow_rates`` rounds them, kept as
integers or integer thousandths), either with ``None`` holes. With
``scaled=True`` (history format 4, which older readers refuse) floats with
up to 6 decimals are kept too, as integers and their count of decimals (the
container metrics' ``round(x, 4)``), and a column's values shifted right by
the trailing zero bits they all share (memory in whole pages). Anything else
(a bool, a float with more decimals, a value past 64 bits) makes
``pack_columns`` return None, and the snapshot is stored as format 2, JSON,
as before: no value is ever stored other than exactly.

Layout of one part (``{"i": [...], "<counter>": [...]}``): a varint column
count; per column its name (one byte: a known name's code, or 0 and then a
varint length and the UTF-8 name), a varint value count, a kind byte (bit 0:
floats; bit 1: zigzag signs; bit 2: holes; bit 3: thousandths; bit 4: a byte
of decimals follows; bit 5: a byte of shift follows, the trailing zero bits
all the values share), the holes' bitmap if any, a width byte (1 to 8: the
fewest bytes that hold the largest value) and the present values' byte
planes. Decoding rebuilds the planes with slice assignment and reads them as
one machine array, so a past view's many snapshots decode at C speed.
"""

from __future__ import annotations

import math
from array import array

from collector.schema import SchemaError

__all__ = ["pack_columns", "unpack_columns"]

_FLOAT, _ZIGZAG, _HOLES, _MILLI, _SCALED, _SHIFTED = 1, 2, 4, 8, 16, 32
_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
for _w, _code in list(_TYPECODES.items()):
    if array(_code).itemsize != _w:  # pragma: no cover - exotic platforms
        _TYPECODES[_w] = next(c for c in "BHILQ" if array(c).itemsize == _w)
_PADDED = {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 8: 8}
_LIMIT = 1 << 64
# Column names written as one byte (their index + 1; 0: the name follows).
# Stored data refers to these positions: only ever append.
_NAMES = ("i", "connections", "failed", "failed_refused", "failed_timeout",
          "failed_unreachable", "failed_other", "accepts", "bytes_sent",
          "bytes_received", "datagrams_sent", "datagrams_received", "resets",
          "retransmits", "connect_latency_us_sum", "connect_latency_count",
          # container metrics (collector.container_metrics.derive_metrics)
          "cgroup_version", "cpu_cores", "cpu_limit_cores",
          "cpu_percent_of_limit", "cpu_throttled_ratio", "cpu_throttled_periods",
          "cpu_throttled_ns", "memory_usage_bytes", "memory_working_set_bytes",
          "memory_limit_bytes", "memory_oom_kills", "io_read_bytes",
          "io_write_bytes", "io_read_ops", "io_write_ops", "io_read_bytes_per_s",
          "io_write_bytes_per_s", "pids", "pids_limit", "net_rx_bytes",
          "net_tx_bytes", "net_rx_bytes_per_s", "net_tx_bytes_per_s",
          "restart_count")
_CODES = {name: i + 1 for i, name in enumerate(_NAMES)}


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[at]
        at += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, at
        shift += 7
        if shift > 63:
            raise SchemaError("malformed history columns: varint too long")


def _integers(values: list, scaled: bool) -> tuple[list[int], int, int] | None:
    """The present values as integers, the column's kind and its decimals,
    or None if the column cannot be stored exactly."""
    if all(type(v) is int for v in values):
        return values, 0, 0
    if not all(type(v) is float and math.isfinite(v) for v in values):
        return None
    if all(v.is_integer() for v in values):
        return [int(v) for v in values], _FLOAT, 0
    for decimals in (1, 2, 3, 4, 5, 6) if scaled else (3,):
        scale = 10 ** decimals
        ints = [round(v * scale) for v in values]
        if all(m / scale == v for m, v in zip(ints, values, strict=True)):
            kind = _MILLI if decimals == 3 else _SCALED
            return ints, _FLOAT | kind, decimals
    return None


def _pack_column(name: str, values: list, out: bytearray, scaled: bool) -> bool:
    present = [v for v in values if v is not None]
    found = _integers(present, scaled)
    if found is None:
        return False
    ints, kind, decimals = found
    shift = _common_shift(ints) if scaled else 0
    if shift:
        kind |= _SHIFTED
        ints = [v >> shift for v in ints]
    if ints and min(ints) < 0:
        kind |= _ZIGZAG
        ints = [(v << 1) ^ (v >> 63) if v >= -(1 << 63) else _LIMIT
                for v in ints]
    top = max(ints, default=0)
    if top >= _LIMIT:
        return False
    width = max(1, (top.bit_length() + 7) // 8)
    code = _CODES.get(name, 0)
    out.append(code)
    if not code:
        encoded = name.encode()
        _varint(len(encoded), out)
        out += encoded
    _varint(len(values), out)
    if len(present) != len(values):
        kind |= _HOLES
    out.append(kind)
    if kind & _SCALED:
        out.append(decimals)
    if kind & _SHIFTED:
        out.append(shift)
    if kind & _HOLES:
        bitmap = bytearray((len(values) + 7) // 8)
        for i, v in enumerate(values):
            if v is not None:
                bitmap[i >> 3] |= 1 << (i & 7)
        out += bitmap
    out.append(width)
    padded = _PADDED[width]
    packed = array(_TYPECODES[padded], ints).tobytes()
    for k in range(width):
        out += packed[k::padded]
    return True


def _common_shift(ints: list[int]) -> int:
    """The trailing zero bits every value shares, if at least 4: memory
    sizes are whole pages (12), block I/O whole sectors. At most 63, what
    the decoder accepts (a whole float of 2**66 has 66; shifted by 63 it
    still fits, or the column is kept as JSON).

    >>> _common_shift([4096, -8192, 0]), _common_shift([4096, 4097])
    (12, 0)
    >>> _common_shift([1 << 66])
    63
    """
    bits = 0
    for v in ints:
        bits |= v
    shift = (bits & -bits).bit_length() - 1 if bits else 0
    return min(shift, 63) if shift >= 4 else 0


def pack_columns(parts: list[dict | None], scaled: bool = False) -> bytes | None:
    """Several parts' columns, in order, as bytes; None if a value cannot be
    stored exactly (the caller then keeps them as JSON). ``scaled``: floats
    of up to 6 decimals may be packed (format 4 only)."""
    out = bytearray()
    for cols in parts:
        cols = cols or {}
        _varint(len(cols), out)
        for name, values in cols.items():
            if not isinstance(values, list) or not _pack_column(
                    name, values, out, scaled):
                return None
    return bytes(out)


def _unpack_column(data: bytes, at: int) -> tuple[str, list, int]:
    code = data[at]
    at += 1
    if code:
        if code > len(_NAMES):
            raise SchemaError(f"malformed history columns: name code {code}")
        name = _NAMES[code - 1]
    else:
        size, at = _read_varint(data, at)
        name = data[at:at + size].decode()
        at += size
    count, at = _read_varint(data, at)
    kind = data[at]
    at += 1
    decimals = shift = 0
    if kind & _SCALED:
        decimals = data[at]
        at += 1
    if kind & _SHIFTED:
        shift = data[at]
        at += 1
        if shift > 63:
            raise SchemaError(f"malformed history columns: shift {shift}")
    present = count
    bitmap = b""
    if kind & _HOLES:
        bitmap = data[at:at + (count + 7) // 8]
        at += len(bitmap)
        present = sum(bin(b).count("1") for b in bitmap)
    width = data[at]
    at += 1
    if width not in _PADDED:
        raise SchemaError(f"malformed history columns: width {width}")
    end = at + present * width
    if end > len(data):
        raise SchemaError("malformed history columns: truncated")
    padded = _PADDED[width]
    joined = bytearray(present * padded)
    for k in range(width):
        joined[k::padded] = data[at + k * present:at + (k + 1) * present]
    at = end
    ints = array(_TYPECODES[padded], bytes(joined)).tolist()
    if kind & _ZIGZAG:
        ints = [(v >> 1) ^ -(v & 1) for v in ints]
    if shift:
        ints = [v << shift for v in ints]
    values: list = ints
    if kind & _SCALED:
        scale = 10 ** decimals
        values = [m / scale for m in ints]
    elif kind & _MILLI:
        values = [m / 1000 for m in ints]
    elif kind & _FLOAT:
        values = [float(m) for m in ints]
    if kind & _HOLES:
        it = iter(values)
        values = [next(it) if bitmap[i >> 3] >> (i & 7) & 1 else None
                  for i in range(count)]
    return name, values, at


def unpack_columns(data: bytes, parts: int) -> list[dict]:
    """``pack_columns``' bytes back to ``parts`` column dicts."""
    out = []
    at = 0
    try:
        for _ in range(parts):
            n, at = _read_varint(data, at)
            cols = {}
            for _ in range(n):
                name, values, at = _unpack_column(data, at)
                cols[name] = values
            out.append(cols)
    except (IndexError, UnicodeDecodeError, ValueError, StopIteration) as exc:
        raise SchemaError(f"malformed history columns: {exc}") from None
    if at != len(data):
        raise SchemaError("malformed history columns: trailing bytes")
    return out
