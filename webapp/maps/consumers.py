"""The map's WebSocket: a snapshot on connect, then only what changed.

Protocol (server -> client, JSON; the client sends nothing):

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

The collectors publish on ``Keys.changes`` after each report; the consumer
rebuilds at most every ``MIN_INTERVAL`` seconds and also every
``RECHECK_INTERVAL`` seconds without messages, because a host whose keys expire
publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import parse_qs

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.backoff import ExponentialBackoff

from webapp.maps.diff import graph_diff, is_empty, split_diff, split_snapshot
from webapp.topology import service

log = logging.getLogger("portolan.maps.consumer")

__all__ = ["TopologyConsumer"]

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400
MIN_INTERVAL = 0.25  # seconds between two updates: at most 4 a second
RECHECK_INTERVAL = 2.0  # seconds: rebuild even when nobody published
DRAIN_LIMIT = 1000  # pub/sub messages folded into one update at most
# Bytes of JSON per message at most: Daphne (autobahn) refuses over 1 MiB.
MESSAGE_LIMIT = 512 * 1024


class TopologyConsumer(AsyncJsonWebsocketConsumer):
    """Streams the live graph at one level to one logged-in browser."""

    backoff = ExponentialBackoff(cap=10.0, base=0.5)
    # No channel layer: this consumer follows Redis pub/sub itself and rides
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
        self.sent = None  # the payload the client has; None: send a snapshot
        self.error_sent = False  # told the client about the current outage
        self.last_refresh = 0.0
        await self.accept()
        self.watcher = asyncio.create_task(self._watch())

    async def disconnect(self, code):
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    @classmethod
    async def encode_json(cls, content):
        # Compact: a 2,000-container map is megabytes of JSON.
        return json.dumps(content, separators=(",", ":"))

    async def receive_json(self, content, **kwargs):
        """The client has nothing to say yet; ignore what it sends."""

    async def _watch(self) -> None:
        """Follow Redis for the socket's lifetime, reconnecting with backoff."""
        failures = 0
        while True:
            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1.0
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(service.keys().changes)
                    await self._refresh()
                    failures = 0
                    await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                # The details (addresses) go to the log, not to the page.
                log.warning("map socket (%s): Redis unreachable: %s", self.level, exc)
                await self._fail("Redis unreachable; retrying")
            except Exception as exc:  # noqa: BLE001 - a socket must never die of it
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
        """Send a snapshot, or the diff against what the client has."""
        payload = await sync_to_async(self._payload, thread_sensitive=False)()
        self.last_refresh = asyncio.get_running_loop().time()
        if self.sent is None:
            messages = split_snapshot(self.level, payload, MESSAGE_LIMIT)
        else:
            diff = graph_diff(self.sent, payload)
            if is_empty(diff):
                return
            messages = split_diff(diff, MESSAGE_LIMIT)
        for message in messages:
            await self.send_json(message)
        self.sent = payload
        self.error_sent = False

    def _payload(self) -> dict:
        return service.graph_payload(service.current_graph(self.level))

    async def _fail(self, message: str) -> None:
        """Tell the client once per outage; resend a snapshot after it."""
        if not self.error_sent:
            await self.send_json({"type": "error", "message": message})
        self.error_sent = True
        self.sent = None
