"""Reading the builder's stored levels: who watches them, and a current copy.

Whoever reads a level live marks it watched (``mark_watched``, a key with a
short TTL): the builder keeps only watched levels current. ``StoredGraph``
keeps one process's copy of a stored level and brings it up to date by
reading only the diffs stored since its last read, so ``/api/graph/`` and
``/metrics`` cost a few small reads instead of reading every host and
building the graph. It answers None when the builder is not keeping the
level current (no builder, or the level just became watched): the caller
builds it itself then.
"""

from __future__ import annotations

import functools
import json
import threading

import redis

from collector.redis_client import redis_client as make_client
from collector.schema import SchemaError
from webapp.builder.keys import (
    GraphKeys,
    decode_entry,
    decode_snapshot_blob,
)
from webapp.maps.diff import apply_diff_to

__all__ = ["WATCH_TTL", "StoredGraph", "encode_fresh", "mark_watched",
           "stored_client", "stored_graph"]

WATCH_TTL = 10.0  # seconds a level stays watched after its last mark
# A stored 10,000-container level is megabytes: a loaded Redis takes longer
# than the web tier's usual 3 s to send it, and a timeout there made relays
# give up, report an error and reload again and again.
READ_TIMEOUT = 30.0


def stored_client() -> redis.Redis:
    """A client for reading stored levels (``REDIS_URL``, a long read timeout)."""
    from django.conf import settings

    return _client(settings.REDIS_URL)


@functools.cache
def _client(url: str) -> redis.Redis:
    return make_client(url, retries=3, socket_connect_timeout=1.0,
                       socket_timeout=READ_TIMEOUT)


def mark_watched(client: redis.Redis, gkeys: GraphKeys, level: str,
                 ttl: float = WATCH_TTL) -> None:
    """Ask the builder to keep ``level`` current for ``ttl`` seconds."""
    client.set(gkeys.watched(level), "1", ex=max(1, round(ttl)))


def encode_fresh(at: float, seq: int, snapshot_seq: int) -> str:
    """The fresh key's value: when, the level's seq, its stored snapshot's seq.

    >>> decode_fresh(encode_fresh(1.5, 9, 7).encode())
    (1.5, 9, 7)
    """
    return f"{at!r} {int(seq)} {int(snapshot_seq)}"


def decode_fresh(blob: bytes) -> tuple[float, int, int]:
    try:
        at, seq, snapshot_seq = blob.decode().split()
        return float(at), int(seq), int(snapshot_seq)
    except ValueError:
        raise SchemaError(f"malformed fresh mark {blob[:40]!r}") from None


class StoredGraph:
    """This process's copy of one stored level; see the module docstring."""

    def __init__(self, level: str):
        self.level = level
        self.snapshot_seq: int | None = None
        self.seq = 0  # the last step applied
        self.applied = 0  # entries of the diff list applied
        self.rest: dict = {}
        self.nodes: dict[str, dict] = {}
        self.links: dict[tuple[str, str], dict] = {}
        self.lock = threading.Lock()

    def read(self, client: redis.Redis, gkeys: GraphKeys) -> dict | None:
        """The level's node-link graph as the builder keeps it, or None when
        the builder does not keep it current (the level is marked watched)."""
        with self.lock:
            pipe = client.pipeline(transaction=True)  # one slot: {graph}
            pipe.set(gkeys.watched(self.level), "1", ex=round(WATCH_TTL))
            pipe.get(gkeys.fresh(self.level))
            _, fresh = pipe.execute()
            if fresh is None:
                return None
            _, seq, snapshot_seq = decode_fresh(fresh)
            if snapshot_seq != self.snapshot_seq or not self._catch_up(
                    client, gkeys, seq):
                if not self._reload(client, gkeys):
                    return None
            return {**self.rest, "nodes": list(self.nodes.values()),
                    "links": list(self.links.values())}

    def _catch_up(self, client, gkeys: GraphKeys, seq: int) -> bool:
        """Apply the diffs stored after ours; False when they do not follow."""
        if seq == self.seq:
            return True
        entries = client.lrange(gkeys.diffs(self.level), self.applied, -1)
        for entry in entries:
            entry_seq, texts = decode_entry(entry)
            if entry_seq != self.seq + 1:
                return False  # a new snapshot meanwhile: read it
            self._apply(texts)
            self.seq = entry_seq
            self.applied += 1
        return True

    def _reload(self, client, gkeys: GraphKeys) -> bool:
        pipe = client.pipeline(transaction=True)
        pipe.get(gkeys.snapshot(self.level))
        pipe.lrange(gkeys.diffs(self.level), 0, -1)
        blob, entries = pipe.execute()
        if blob is None:
            return False
        seq, texts = decode_snapshot_blob(blob)
        self.rest, self.nodes, self.links = {}, {}, {}
        for text in texts:
            graph = json.loads(text)["graph"]
            self.rest = {k: v for k, v in graph.items() if k not in ("nodes", "links")}
            self.nodes.update((n["id"], n) for n in graph["nodes"])
            self.links.update(((e["source"], e["target"]), e) for e in graph["links"])
        self.snapshot_seq, self.seq, self.applied = seq, seq, 0
        for entry in entries:
            entry_seq, diff_texts = decode_entry(entry)
            self.applied += 1
            if entry_seq > self.seq:
                self._apply(diff_texts)
                self.seq = entry_seq
        return True

    def _apply(self, texts: list[str]) -> None:
        """One step's diff messages, applied in place (``diff.apply_diff``)."""
        for text in texts:
            apply_diff_to(self.nodes, self.links, json.loads(text))


_COPIES: dict[str, StoredGraph] = {}


def stored_graph(client: redis.Redis, gkeys: GraphKeys, level: str) -> dict | None:
    """``StoredGraph.read`` of this process's copy of ``level``."""
    gkeys.snapshot(level)  # validates the level
    copy = _COPIES.setdefault(level, StoredGraph(level))
    try:
        return copy.read(client, gkeys)
    except SchemaError:
        return None  # unreadable: the caller builds the graph itself
