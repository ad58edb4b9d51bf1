"""One watch per web worker: its map sockets hear at once that a login ended.

While the worker has open map sockets the watch is a member of the Channels
group ``webapp.accounts.ended_logins.GROUP`` (one channel for the process,
as the relays have: no receive loop per socket). A message names a user:
that user's sockets here check their login now (a new password, a
deactivated or deleted account), or, when it names a session logged out, the
sockets of that session close. A message lost while the watch joins again is
caught by the sockets' own check, at most ``LOGIN_RECHECK_INTERVAL`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

import redis
from channels.layers import get_channel_layer
from redis.backoff import ExponentialBackoff

from collector.redis_client import REDIS_ERRORS
from webapp.accounts.ended_logins import GROUP, MESSAGE_TYPE, session_digest
from webapp.maps.tasks import end_if_cancelled, on_this_loop, stop

log = logging.getLogger("portolan.maps.login_watch")

__all__ = ["LoginWatch"]

GROUP_RENEW = 3600.0  # seconds: re-join the group before channels_redis expires it


class LoginWatch:
    """This worker's open map sockets by user, and its member of ``GROUP``."""

    watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # by loop
    backoff = ExponentialBackoff(cap=10.0, base=0.5)

    @classmethod
    def for_worker(cls) -> LoginWatch:
        """This worker's watch (one per event loop: see ``webapp.maps.tasks``)."""
        return on_this_loop(cls.watches, None, cls)

    def __init__(self):
        self.sockets: dict[str, set] = {}  # by the user's id, as text
        self.task: asyncio.Task | None = None
        self.ready: asyncio.Event | None = None  # set once a member of the group

    def add(self, socket) -> None:
        self.sockets.setdefault(str(socket.scope["user"].pk), set()).add(socket)
        if self.task is None:
            self.ready = asyncio.Event()
            self.task = asyncio.create_task(self._follow())

    async def remove(self, socket) -> None:
        user = str(socket.scope["user"].pk)
        sockets = self.sockets.get(user, set())
        sockets.discard(socket)
        if not sockets:
            self.sockets.pop(user, None)
        if not self.sockets and self.task is not None:
            task, self.task = self.task, None
            stop(task, "login watch")

    async def _follow(self) -> None:
        """Join the group and hand each message to the sockets it names."""
        layer = get_channel_layer()
        failures = 0
        channel = None
        try:
            while True:
                try:
                    channel = await layer.new_channel()
                    await layer.group_add(GROUP, channel)
                    self.ready.set()
                    failures = 0
                    joined = asyncio.get_running_loop().time()
                    while True:
                        end_if_cancelled()  # group_add swallows a cancellation
                        message = await layer.receive(channel)
                        if message.get("type") == MESSAGE_TYPE:
                            await self._login_ended(message)
                        if asyncio.get_running_loop().time() - joined > GROUP_RENEW:
                            await layer.group_add(GROUP, channel)
                            joined = asyncio.get_running_loop().time()
                except redis.exceptions.TimeoutError as exc:
                    end_if_cancelled(exc)  # see the relay's _follow
                    # A quiet group (channels_redis' 5 s BZPOPMIN against
                    # redis-py's 5 s read timeout), as in the relays: join again.
                    with contextlib.suppress(*REDIS_ERRORS):
                        await layer.group_discard(GROUP, channel)
                    continue
                except REDIS_ERRORS as exc:
                    end_if_cancelled(exc)
                    log.warning("login watch: Redis unreachable: %s", exc)
                await asyncio.sleep(self.backoff.compute(failures))
                failures += 1
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await layer.group_discard(GROUP, channel)

    async def _login_ended(self, message: dict) -> None:
        sockets = list(self.sockets.get(message.get("user"), ()))
        session = message.get("session")
        if session is None:
            checks = [s.check_login() for s in sockets]
        else:
            checks = [s.end_login() for s in sockets
                      if session_digest(s.scope["session"].session_key or "")
                      == session]
        await asyncio.gather(*checks, return_exceptions=True)
