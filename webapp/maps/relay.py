"""One relay per level and web worker: the builder's diffs to this worker's sockets.

The relay joins the level's Channels group once for the whole process (so a
diff crosses from Redis once per worker, however many maps are open), keeps
the last stored snapshot and the diffs since, and hands each update to its
sockets' ``topology_update``. It only forwards frames made once for every
socket (``webapp.maps.frames``): the builder's compressed diffs as published,
and the stored snapshot's parts, compressed here once per load (in a thread,
reusing the frames it already holds for the same steps).
A relay that misses a step (a gap in ``seq``), or that the builder tells to
(a fresh start), reloads the stored snapshot and sends it to its sockets.
While it has sockets it marks its level watched (``webapp.builder.stored``):
the builder keeps only watched levels current.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from asgiref.sync import sync_to_async

from collector.redis_client import REDIS_ERRORS
from collector.schema import SchemaError
from webapp.builder.builder import load_stored
from webapp.builder.keys import UPDATE_TYPE, GraphKeys, group_name
from webapp.builder.stored import WATCH_TTL, mark_watched, stored_client
from webapp.maps.frames import FrameStream, pack_frame
from webapp.maps.group_follow import follow_group
from webapp.maps.tasks import end_if_cancelled, on_this_loop, stop
from webapp.topology import service

log = logging.getLogger("portolan.maps.relay")

__all__ = ["LevelRelay", "NO_BUILDER"]

NO_BUILDER = ("no graph yet: the graph builder (manage.py builder) has stored "
              "none; waiting for it")
RELOAD_AFTER = 30  # diffs kept since the snapshot before a joiner reloads it
PACK_PARTS = 8  # snapshot parts packed at a time (~40 ms) before they are sent


class LevelRelay:
    """This worker's copy of one level's stream; see the module docstring."""

    relays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # by loop

    @classmethod
    def for_level(cls, level: str) -> LevelRelay:
        """This worker's relay for ``level`` (one per event loop: see
        ``webapp.maps.tasks``)."""
        return on_this_loop(cls.relays, level, lambda: cls(level))

    def __init__(self, level: str):
        self.level = level
        self.sockets: set = set()
        self.seq: int | None = None  # step of the builder held; None: none
        self.snapshot_seq: int | None = None  # step of the snapshot held
        self.snapshot: list[bytes] = []  # its parts as frames
        self.diffs: list[tuple[int, list[bytes]]] = []  # frames since the snapshot
        self.updates = 0  # group messages received
        self.lock = asyncio.Lock()  # one socket's catch-up never interleaves
        self.task: asyncio.Task | None = None
        self.watching: asyncio.Task | None = None

    # ------------------------------------------------------------ sockets

    async def join(self, socket) -> None:
        """Add a socket: it gets the snapshot and the diffs since, then updates."""
        self.sockets.add(socket)
        if self.watching is None:
            self.watching = asyncio.create_task(self._watch())
        if self.task is None:
            self.task = asyncio.create_task(self._follow())
        async with self.lock:
            if self.seq is not None and len(self.diffs) > RELOAD_AFTER:
                # A newer snapshot for the joiner; the sockets already here
                # need it only if the stored steps are not the ones they hold.
                held = self.seq
                if await self._reload(only=socket) and self.seq != held:
                    await self._each("catch_up", self.snapshot, self.diffs,
                                     self.seq, skip=socket)
                return
            if self.seq is not None:
                await socket.catch_up(self.snapshot, self.diffs, self.seq)

    async def leave(self, socket) -> None:
        self.sockets.discard(socket)
        if self.sockets:
            return
        for task, what in ((self.watching, ": its watch mark"), (self.task, "")):
            if task is not None:
                stop(task, f"map relay ({self.level}){what}")
        self.watching = self.task = None
        self.seq, self.snapshot, self.diffs = None, [], []
        self.snapshot_seq = None

    async def _watch(self) -> None:
        """Mark the level watched, again well within the mark's TTL."""
        gkeys = GraphKeys(service.keys().prefix)
        while True:
            try:
                await sync_to_async(mark_watched, thread_sensitive=False)(
                    service.redis_client(), gkeys, self.level)
            except REDIS_ERRORS as exc:
                log.warning("map relay (%s): cannot mark the level watched: %s",
                            self.level, exc)
            end_if_cancelled()
            await asyncio.sleep(WATCH_TTL / 3)

    # ------------------------------------------------------------ the stream

    async def _follow(self) -> None:
        """Follow the level's group (``webapp.maps.group_follow``): load the
        snapshot when none is held, relay updates, ride out outages."""
        await follow_group(group_name(self.level), self._received,
                           f"map relay ({self.level})", joined=self._joined,
                           failed=self._failed)

    async def _joined(self) -> None:
        if self.seq is None:  # a start or an outage; else held still (a
            async with self.lock:  # message lost meanwhile shows as a gap)
                await self._reload()

    async def _received(self, message: dict) -> None:
        if message.get("type") == UPDATE_TYPE:
            await self._update(message)

    async def _failed(self, exc: Exception) -> None:
        if isinstance(exc, REDIS_ERRORS):
            await self._fail("Redis unreachable; retrying")
        else:
            await self._fail(f"graph update failed: {type(exc).__name__}")

    async def _reload(self, only=None) -> bool:
        """Load the stored snapshot and diffs; send them to every socket (or
        to ``only``), each part as soon as it is packed. False when none is
        stored."""
        held = (self.snapshot_seq, self.snapshot, dict(self.diffs))
        found = await sync_to_async(self._load, thread_sensitive=False)(*held)
        if found is None:
            self.seq = None
            await self._each("feed_error", NO_BUILDER)
            return False
        seq, snapshot, texts, self.diffs = found
        self.snapshot_seq = seq
        self.seq = self.diffs[-1][0] if self.diffs else seq
        stream = None
        if snapshot is None:  # not the one held: packed while it is sent
            snapshot = stream = FrameStream()
        targets = [only] if only is not None else list(self.sockets)
        sending = asyncio.ensure_future(asyncio.gather(
            *(s.catch_up(snapshot, self.diffs, self.seq) for s in targets),
            return_exceptions=True))
        if stream is None:
            self.snapshot = snapshot
            await sending
            return True
        self.snapshot = []  # until packed whole: a relay cancelled holds none
        try:
            for start in range(0, len(texts), PACK_PARTS):
                stream.add(await sync_to_async(_packed, thread_sensitive=False)(
                    texts[start:start + PACK_PARTS]))
        except BaseException:
            sending.cancel()
            raise
        finally:
            stream.finish()
        self.snapshot = stream.frames
        await sending
        return True

    def _load(self, snapshot_seq, snapshot, diffs):
        """The stored snapshot and diffs: ``(seq, snapshot frames or None,
        snapshot texts, diffs as frames)``. The frames of the steps held
        (``snapshot`` at ``snapshot_seq``, ``diffs`` by step) are reused; a
        new snapshot's texts are left for ``_reload`` to pack."""
        try:
            found = load_stored(stored_client(), GraphKeys(service.keys().prefix),
                                self.level)
        except SchemaError as exc:
            log.warning("stored %s graph unreadable: %s", self.level, exc)
            return None
        if found is None:
            return None
        seq, texts, stored_diffs = found
        frames = snapshot if seq == snapshot_seq and snapshot else None
        return seq, frames, texts, [
            (s, diffs.get(s) or _packed(diff_texts)) for s, diff_texts in stored_diffs]

    async def _update(self, message: dict) -> None:
        self.updates += 1
        async with self.lock:
            seq, frames = message["seq"], message.get("frames")
            if self.seq is not None and seq <= self.seq:
                return  # already held (loaded with the snapshot)
            if frames is None and message.get("texts") is not None:
                # XXX: a builder from before frames (uncompressed text); can go
                # once no such builder runs.
                frames = await sync_to_async(_packed, thread_sensitive=False)(
                    message["texts"])
            if frames is None or self.seq is None or seq != self.seq + 1:
                await self._reload()
                return
            self.seq = seq
            self.diffs.append((seq, frames))
            await self._each("topology_update", seq, frames)

    async def _fail(self, message: str) -> None:
        self.seq = None
        await self._each("feed_error", message)

    async def _each(self, method: str, *args, skip=None) -> None:
        await asyncio.gather(
            *(getattr(s, method)(*args) for s in list(self.sockets) if s is not skip),
            return_exceptions=True,
        )


def _packed(texts) -> list[bytes]:
    """Messages' texts as the frames the sockets send (in a thread: ~10 ms a MB)."""
    return [pack_frame(t) for t in texts]
