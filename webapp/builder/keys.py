"""The builder's Redis keys, Channels groups and stored forms, made in one place.

``P`` is the collectors' key prefix (``collector.schema.Keys``):

``P:{graph}:lock``              STR  id of the one active builder; TTL
``P:{graph}:snapshot:<level>``  STR  zstd of ``seq`` and the encoded snapshot
                                      messages, one per line; TTL
``P:{graph}:diffs:<level>``     LIST the encoded diffs after that snapshot,
                                      oldest first, each the zstd of ``seq``
                                      and its messages, one per line; TTL
``P:{graph}:watched:<level>``   STR  set (with a short TTL) by whoever reads the
                                      level live: web workers relaying it to
                                      open maps, /api/graph/, /metrics. The
                                      builder keeps only watched levels current
``P:{graph}:fresh:<level>``     STR  unix time at which the builder last brought
                                      the stored level up to date; TTL

They share the hash tag ``{graph}`` (one Redis Cluster slot), so one
transaction replaces a snapshot and empties its diff list. JSON never holds a
raw newline, so lines separate messages safely.

Channels group ``topology.<level>``: ``{"type": "topology.update", "level",
"seq", "frames"}``; ``frames`` are the diff messages of step ``seq`` as the map
socket's binary frames (``webapp.maps.frames``), or None when there is no diff
to apply (a fresh start): a relay that is not at ``seq - 1`` reloads the
stored snapshot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import zstandard

from collector.schema import Keys, SchemaError

__all__ = [
    "UPDATE_TYPE",
    "GraphKeys",
    "decode_entry",
    "decode_snapshot_blob",
    "encode_entry",
    "encode_snapshot_blob",
    "group_name",
]

UPDATE_TYPE = "topology.update"  # handled by ``topology_update`` on a relay's sockets
_LEVELS = ("service", "container", "host")


def group_name(level: str) -> str:
    """The Channels group a level's diffs are published to.

    >>> group_name("host")
    'topology.host'
    """
    if level not in _LEVELS:
        raise SchemaError(f"unknown level {level!r}")
    return f"topology.{level}"


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def encode_entry(seq: int, texts: list[bytes] | list[str]) -> bytes:
    """One stored diff or snapshot: its seq, then its messages, one a line,
    compressed with zstd (its fastest level: a fifth of zlib's CPU, and
    smaller).

    A diff when every flow changes is ~10 MB of JSON and the list holds them
    until the next snapshot: compressed, a tenth of that. The lines are fed
    to the compressor one message at a time, never joined into one buffer:
    a fresh allocation of tens of MB cost more than the compression.

    >>> decode_entry(encode_entry(7, [b'{"a":1}', '{"b":2}']))
    (7, ['{"a":1}', '{"b":2}'])
    """
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    out = [compressor.compress(b"%d" % int(seq))]
    for text in texts:
        out.append(compressor.compress(b"\n"))
        out.append(compressor.compress(
            text if isinstance(text, bytes) else text.encode()))
    out.append(compressor.flush())
    return b"".join(out)


def decode_entry(blob: bytes) -> tuple[int, list[str]]:
    r"""Inverse of ``encode_entry``; an entry stored uncompressed (by the
    builder of the version before) is read too.

    >>> decode_entry(b'4\n{"a":1}')
    (4, ['{"a":1}'])
    >>> decode_entry(b"\xff\x00")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    collector.schema.SchemaError: malformed stored graph entry: 'utf-8' codec ...
    """
    try:
        if blob[:4] == _ZSTD_MAGIC:
            blob = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
        head, *texts = blob.decode().split("\n")
        return int(head), texts
    except (ValueError, zstandard.ZstdError) as exc:  # UnicodeDecodeError too
        raise SchemaError(f"malformed stored graph entry: {exc}") from None


def encode_snapshot_blob(seq: int, texts: list[bytes] | list[str]) -> bytes:
    """A stored snapshot: the same form as a stored diff (``encode_entry``).

    >>> decode_snapshot_blob(encode_snapshot_blob(3, [b'{"a":1}']))
    (3, ['{"a":1}'])
    """
    return encode_entry(seq, texts)


def decode_snapshot_blob(blob: bytes) -> tuple[int, list[str]]:
    r"""Inverse of ``encode_snapshot_blob``; a zlib one (a builder of two
    versions before) is read too.

    >>> decode_snapshot_blob(zlib.compress(b'2\n{}'))
    (2, ['{}'])
    """
    if blob[:4] == _ZSTD_MAGIC:
        return decode_entry(blob)
    try:
        return decode_entry(zlib.decompress(blob))
    except zlib.error as exc:
        raise SchemaError(f"malformed stored snapshot: {exc}") from None


@dataclass(slots=True)
class GraphKeys:
    """The builder's Redis keys under one (validated) prefix."""

    prefix: str = "portolan"

    def __post_init__(self):
        self.prefix = Keys(self.prefix).prefix

    @property
    def lock(self) -> str:
        return f"{self.prefix}:{{graph}}:lock"

    def snapshot(self, level: str) -> str:
        group_name(level)  # validates the level
        return f"{self.prefix}:{{graph}}:snapshot:{level}"

    def diffs(self, level: str) -> str:
        group_name(level)
        return f"{self.prefix}:{{graph}}:diffs:{level}"

    def watched(self, level: str) -> str:
        group_name(level)
        return f"{self.prefix}:{{graph}}:watched:{level}"

    def fresh(self, level: str) -> str:
        group_name(level)
        return f"{self.prefix}:{{graph}}:fresh:{level}"
