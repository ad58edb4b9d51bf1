"""The map's WebSocket: a snapshot on connect, then only what changed.

Protocol (server -> client, JSON; the client sends nothing, and any frame it
does send is ignored, so a stray one neither ends the socket nor puts the map
in an error state):

``{"type": "snapshot", "level": ..., "graph": <node-link JSON>, "part": i, "parts": n}``
    On connect, and again after an error, so the client can resynchronise.
    A large graph comes in ``n`` parts (nodes first, then links) that the
    client joins: Daphne refuses WebSocket messages over 1 MiB.
``{"type": "diff", "added_nodes": [...], "removed_nodes": [ids], ...}``
    See ``webapp.maps.diff.graph_diff``; empty diffs are not sent; a large
    one is sent as several smaller diffs, applied in order.
``{"type": "error", "message": ...}``
    Redis is unreachable (or the graph failed); the socket stays open and
    retries with backoff, then sends a fresh snapshot.

The login is checked again before an update at most every
``LOGIN_RECHECK_INTERVAL`` seconds; once it has ended (logout, password
change, deactivation) the socket is closed with code 4401 instead.

The collectors publish on ``Keys.changes`` after each report. One
``LevelFeed`` per level and process follows them for every socket at that
level: it rebuilds the graph at most every ``MIN_INTERVAL`` seconds (and every
``RECHECK_INTERVAL`` seconds without messages, because a host whose keys expire
publishes nothing), diffs it once, encodes it once, and fans the same messages
out to its sockets. A hundred open maps cost one build per update, not a
hundred. A socket that is behind (it just joined, or missed an update) gets a
snapshot instead of the diff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import import_module
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.backoff import ExponentialBackoff

from collector.redis_client import REDIS_ERRORS, async_redis_client
from webapp.maps.diff import graph_diff, is_empty, split_diff, split_snapshot
from webapp.topology import service

log = logging.getLogger("portolan.maps.consumer")

__all__ = ["LevelFeed", "TopologyConsumer"]

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400
MIN_INTERVAL = 0.25  # seconds between two updates: at most 4 a second
RECHECK_INTERVAL = 2.0  # seconds: rebuild even when nobody published
# seconds between two checks that a socket's user is still logged in (not
# logged out, password unchanged, still active), made before an update is sent
LOGIN_RECHECK_INTERVAL = 30.0
DRAIN_LIMIT = 1000  # pub/sub messages folded into one update at most
# Bytes of JSON per message at most: Daphne (autobahn) refuses over 1 MiB.
MESSAGE_LIMIT = 512 * 1024


def _encode(message: dict) -> str:
    # Compact: a 2,000-container map is megabytes of JSON.
    return json.dumps(message, separators=(",", ":"))


class LevelFeed:
    """The live graph at one level, built once per update for all its sockets."""

    feeds: dict[str, LevelFeed] = {}
    backoff = ExponentialBackoff(cap=10.0, base=0.5)

    @classmethod
    def for_level(cls, level: str) -> LevelFeed:
        if level not in cls.feeds:
            cls.feeds[level] = cls(level)
        return cls.feeds[level]

    def __init__(self, level: str):
        self.level = level
        self.sockets: set[TopologyConsumer] = set()
        self.payload: dict | None = None  # the latest graph; None: none yet
        self.seq = 0  # bumped on every change; sockets at seq - 1 take the diff
        self.builds = 0
        self.last_refresh = 0.0
        self.task: asyncio.Task | None = None
        self._snapshot: tuple[int, list[str]] | None = None

    def join(self, socket: TopologyConsumer) -> None:
        self.sockets.add(socket)
        if self.task is None:
            self.task = asyncio.create_task(self._watch())

    async def leave(self, socket: TopologyConsumer) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.task is not None:
            task, self.task = self.task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The next socket starts from a fresh build (settings may differ).
            self.payload, self._snapshot = None, None

    def snapshot_texts(self) -> list[str]:
        """The current graph as encoded snapshot messages (cached per change)."""
        if self._snapshot is None or self._snapshot[0] != self.seq:
            messages = split_snapshot(self.level, self.payload, MESSAGE_LIMIT)
            self._snapshot = (self.seq, [_encode(m) for m in messages])
        return self._snapshot[1]

    async def _watch(self) -> None:
        """Follow Redis while sockets are open, reconnecting with backoff."""
        failures = 0
        while True:
            # One Redis or a cluster (whose PUBLISH reaches every node).
            client = async_redis_client(settings.REDIS_URL, socket_connect_timeout=1.0)
            try:
                # A cluster client must learn the cluster's map before pub/sub.
                await client.initialize()
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(service.keys().changes)
                    await self._refresh()
                    failures = 0
                    await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                # The details (addresses) go to the log, not to the page.
                log.warning("map feed (%s): Redis unreachable: %s", self.level, exc)
                await self._fail("Redis unreachable; retrying")
            except Exception as exc:  # noqa: BLE001 - a feed must never die of it
                log.exception("building the %s graph failed", self.level)
                await self._fail(f"graph update failed: {type(exc).__name__}")
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(self.backoff.compute(failures))
            failures += 1

    async def _follow(self, pubsub) -> None:
        """Rebuild after each batch of change messages, or every few seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=RECHECK_INTERVAL
            )
            wait = self.last_refresh + MIN_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            for _ in range(DRAIN_LIMIT):
                if not await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.0
                ):
                    break
            await self._refresh()

    async def _refresh(self) -> None:
        """Build once; send the diff (or a snapshot to sockets that are behind)."""
        payload = await sync_to_async(self._build, thread_sensitive=False)()
        self.last_refresh = asyncio.get_running_loop().time()
        texts = None
        if self.payload is not None:
            diff = graph_diff(self.payload, payload)
            if is_empty(diff):
                return
            texts = [_encode(m) for m in split_diff(diff, MESSAGE_LIMIT)]
        self.payload = payload
        self.seq += 1
        await asyncio.gather(
            *(s.feed_update(self, texts) for s in list(self.sockets)),
            return_exceptions=True,
        )

    def _build(self) -> dict:
        self.builds += 1
        return service.graph_payload(service.current_graph(self.level))

    async def _fail(self, message: str) -> None:
        # After an outage everyone gets a fresh snapshot, changed or not.
        self.payload = None
        await asyncio.gather(
            *(s.feed_error(message) for s in list(self.sockets)),
            return_exceptions=True,
        )


class TopologyConsumer(AsyncJsonWebsocketConsumer):
    """Streams the live graph at one level to one logged-in browser."""

    # No channel layer: the level's feed follows Redis pub/sub itself and rides
    # out Redis outages; a layer's receive loop would end the socket instead.
    # (get_channel_layer returns None for an alias that is not configured.)
    channel_layer_alias = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Refuse the handshake: nothing is accepted for anonymous sockets.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.level = query.get("level", ["container"])[-1]
        if self.level not in service.LEVELS:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.seq = None  # the feed's seq the client is at; None: needs a snapshot
        self.error_sent = False  # told the client about the current outage
        self.login_checked = asyncio.get_running_loop().time()
        self.closed = False
        await self.accept()
        self.feed = LevelFeed.for_level(self.level)
        self.feed.join(self)
        if self.feed.payload is not None:
            await self._send_snapshot()

    async def disconnect(self, code):
        feed = getattr(self, "feed", None)
        if feed is not None:
            await feed.leave(self)

    @classmethod
    async def encode_json(cls, content):
        return _encode(content)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """The client has nothing to say yet: every frame is ignored, undecoded.

        Decoding (the JSON consumer's own receive) raised on a text frame that
        is not JSON or on a binary frame; that ended the consumer without
        disconnect(), and its feed kept sending to the dead socket for good.
        """

    async def _send_snapshot(self) -> None:
        for text in self.feed.snapshot_texts():
            await self.send(text_data=text)
        self.seq = self.feed.seq
        self.error_sent = False

    async def _logged_in(self) -> bool:
        """Whether the session still logs in the same user (checked now and then).

        The login is checked on connect only; a socket would otherwise keep
        streaming after a logout, a password change or a deactivation.
        """
        if self.closed:
            return False
        now = asyncio.get_running_loop().time()
        if now - self.login_checked < LOGIN_RECHECK_INTERVAL:
            return True
        # A fresh store: the scope's session is the one loaded at connect.
        store = import_module(settings.SESSION_ENGINE).SessionStore
        user = await get_user({"session": store(self.scope["session"].session_key)})
        self.login_checked = now  # only once checked: a failed check sends nothing
        if user.is_authenticated and user.pk == self.scope["user"].pk:
            return True
        self.closed = True  # disconnect() leaves the feed when the close is done
        await self.close(code=CLOSE_UNAUTHENTICATED)
        return False

    async def feed_update(self, feed: LevelFeed, diff_texts: list[str] | None):
        """The feed changed: the shared diff if this client is one step behind."""
        if not await self._logged_in():
            return
        if diff_texts is None or self.seq != feed.seq - 1:
            await self._send_snapshot()
            return
        for text in diff_texts:
            await self.send(text_data=text)
        self.seq = feed.seq

    async def feed_error(self, message: str) -> None:
        """Tell the client once per outage; a snapshot follows the recovery."""
        if not self.error_sent and not self.closed:
            await self.send_json({"type": "error", "message": message})
        self.error_sent = True
        self.seq = None
