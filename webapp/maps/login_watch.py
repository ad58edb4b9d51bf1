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
import weakref

from webapp.accounts.ended_logins import GROUP, MESSAGE_TYPE, session_digest
from webapp.maps.group_follow import follow_group
from webapp.maps.tasks import on_this_loop, stop

__all__ = ["LoginWatch"]


class LoginWatch:
    """This worker's open map sockets by user, and its member of ``GROUP``."""

    watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # by loop

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
        """Follow the group (``webapp.maps.group_follow``) and hand each
        message to the sockets it names."""
        await follow_group(GROUP, self._received, "login watch",
                           joined=self._joined)

    async def _joined(self) -> None:
        self.ready.set()

    async def _received(self, message: dict) -> None:
        if message.get("type") == MESSAGE_TYPE:
            await self._login_ended(message)

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
