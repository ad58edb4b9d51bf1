"""The map's WebSocket: a snapshot on connect, then only what changed.

Protocol (server -> client, JSON: snapshots and diffs in binary frames, each
a zlib stream of the message's JSON made once for every socket
(``webapp.maps.frames``), errors in text frames; the client sends nothing, and
any frame it does send is ignored, so a stray one neither ends the socket nor
puts the map in an error state):

``{"type": "snapshot", "level": ..., "graph": <node-link JSON>, "part": i, "parts": n}``
    On connect, and again after an error or a gap, so the client can
    resynchronise. A large graph comes in ``n`` parts (nodes first, then
    links) that the client joins: Daphne refuses WebSocket messages over 1 MiB.
``{"type": "diff", "added_nodes": [...], "removed_nodes": [ids], ...}``
    See ``webapp.maps.diff.graph_diff``; ``updated_nodes`` and
    ``updated_links`` carry only the keys that changed, to merge into what the
    client holds; empty diffs are not sent; a large one is sent as several
    smaller diffs, applied in order.
``{"type": "error", "message": ...}``
    Redis is unreachable, the graph failed, or no graph builder has stored a
    graph yet; the socket stays open and a fresh snapshot follows recovery.

The login is checked again before an update at most every
``LOGIN_RECHECK_INTERVAL`` seconds, and at once when any worker tells this
one's ``LoginWatch`` (``webapp.maps.login_watch``) that the user's login may
have ended; once it has (logout, password change, deactivation, deletion) the
socket is closed with code 4401.

The graph is built by one process for every web worker (``manage.py builder``,
``webapp.builder``); this consumer only relays. A worker's ``LevelRelay``
(``webapp.maps.relay``) joins the level's Channels group once, holds the last
stored snapshot and the diffs since, and calls ``catch_up`` on a new socket
and ``topology_update`` on each socket for each step, with the frames made
once for all: a hundred open maps cost no build, no encoding and no
compression here, only the copies of compressed bytes Daphne and the kernel
make per socket.

Daphne writes a sent message inside ``send`` without returning to its event
loop, so a socket catching up on a 10,000-container snapshot, or fifty
sockets getting a large diff, would hold the loop for seconds: Daphne then
refuses the handshakes waiting meanwhile (403 after its 5 s connect timeout).
Each socket therefore yields to the loop after every message it sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from webapp.maps.frames import FrameStream, each_frame
from webapp.maps.login_watch import LoginWatch
from webapp.maps.relay import LevelRelay
from webapp.topology import service

log = logging.getLogger("portolan.maps.consumer")

__all__ = ["TopologyConsumer"]

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400
# seconds between two checks that a socket's user is still logged in (not
# logged out, password unchanged, still active), made before an update is sent
LOGIN_RECHECK_INTERVAL = 30.0


def _encode(message: dict) -> str:
    # Compact: a 2,000-container map is megabytes of JSON.
    return json.dumps(message, separators=(",", ":"))


class TopologyConsumer(AsyncJsonWebsocketConsumer):
    """Streams the live graph at one level to one logged-in browser."""

    # No channel of its own: the worker's relay for the level is the one
    # member of the group and calls the handlers below; a layer's receive
    # loop per socket would pull every diff from Redis once per open map.
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
        self.seq = None  # the builder's step the client is at; None: none yet
        self.error_sent = False  # told the client about the current outage
        self.login_checked = asyncio.get_running_loop().time()
        self.closed = False
        await self.accept()
        self.login_watch = LoginWatch.for_worker()
        self.login_watch.add(self)
        self.relay = LevelRelay.for_level(self.level)
        await self.relay.join(self)

    async def disconnect(self, code):
        login_watch = getattr(self, "login_watch", None)
        if login_watch is not None:
            await login_watch.remove(self)
        relay = getattr(self, "relay", None)
        if relay is not None:
            await relay.leave(self)

    @classmethod
    async def encode_json(cls, content):
        return _encode(content)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """The client has nothing to say yet: every frame is ignored, undecoded.

        Decoding (the JSON consumer's own receive) raised on a text frame that
        is not JSON or on a binary frame; that ended the consumer without
        disconnect(), and its relay kept sending to the dead socket for good.
        """

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
        return await self.check_login()

    async def check_login(self) -> bool:
        """Whether the session still logs in the same user, asked now; if not,
        the socket is closed."""
        if self.closed:
            return False
        # A fresh store: the scope's session is the one loaded at connect.
        store = import_module(settings.SESSION_ENGINE).SessionStore
        user = await get_user({"session": store(self.scope["session"].session_key)})
        # Only once checked: a failed check sends nothing.
        self.login_checked = asyncio.get_running_loop().time()
        if user.is_authenticated and user.pk == self.scope["user"].pk:
            return not self.closed
        await self.end_login()
        return False

    async def end_login(self) -> None:
        """Close the socket: its login has ended (once, however many say so)."""
        if self.closed:
            return
        self.closed = True  # disconnect() leaves the relay when the close is done
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def catch_up(self, snapshot: list[bytes] | FrameStream, diffs: list,
                       seq: int) -> None:
        """The stored snapshot (its frames, or a stream of them still being
        packed) and the diffs after it, as frames."""
        if not await self._logged_in():
            return
        async for frame in each_frame(snapshot):
            await self._send_frame(frame)
        for _, frames in diffs:
            for frame in frames:
                await self._send_frame(frame)
        self.seq = seq
        self.error_sent = False

    async def _send_frame(self, frame: bytes) -> None:
        """Send one message's binary frame, then let other sockets and
        handshakes run (see the module docstring)."""
        await self.send(bytes_data=frame)
        await asyncio.sleep(0)

    async def topology_update(self, seq: int, frames: list[bytes]) -> None:
        """One builder step (``topology.update``): its diff, if this client
        holds the step before; the relay sends a snapshot to the others."""
        if self.seq is None or seq != self.seq + 1:
            return
        if not await self._logged_in():
            return
        self.seq = seq  # before yielding: the next step follows this one
        for frame in frames:
            await self._send_frame(frame)

    async def feed_error(self, message: str) -> None:
        """Tell the client once per outage; a snapshot follows the recovery."""
        if not self.error_sent and not self.closed:
            await self.send_json({"type": "error", "message": message})
        self.error_sent = True
        self.seq = None
