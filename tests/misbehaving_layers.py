"""Channels layers that do what channels_redis over redis-py can do to a task.

Each is the real ``RedisChannelLayer`` with one call changed, for tests of
the worker's long-lived tasks (relays, the login watch, the graph builder):
a cancellation turned into another error, slow to take effect, or swallowed;
a read that fails once. Name one as ``CHANNEL_LAYERS``' backend:
``tests.misbehaving_layers.LayerSwallowingCancel``.
"""

import asyncio

from channels_redis.core import RedisChannelLayer


class LayerFailingOnCancel(RedisChannelLayer):
    """A cancelled receive raises another error, as channels_redis does when
    its finally's ``assert not self.receive_lock.locked()`` fails."""

    async def receive(self, channel):
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            raise AssertionError("receive lock still held") from None


class LayerSlowToCancel(RedisChannelLayer):
    """A cancelled receive cleans up for a second before it ends."""

    async def receive(self, channel):
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)
            raise


class LayerSwallowingCancel(RedisChannelLayer):
    """``group_add`` and ``group_send`` take their time (0.3 s) and return
    normally when cancelled, as channels_redis' can over redis-py 8.2.
    ``busy``, when a test sets it, is set once either has begun."""

    busy: asyncio.Event | None = None

    async def group_add(self, group, channel):
        await self._swallowing(super().group_add(group, channel))

    async def group_send(self, group, message):
        await self._swallowing(super().group_send(group, message))

    async def _swallowing(self, call) -> None:
        later = asyncio.ensure_future(self._later(call))
        try:
            await asyncio.shield(later)
        except asyncio.CancelledError:
            await later

    async def _later(self, call) -> None:
        if LayerSwallowingCancel.busy is not None:
            LayerSwallowingCancel.busy.set()
        await asyncio.sleep(0.3)
        await call


class LayerFailingOneRead(RedisChannelLayer):
    """The first receive (since ``failed`` was last cleared) fails as a
    dropped connection does."""

    failed = False

    async def receive(self, channel):
        if not LayerFailingOneRead.failed:
            LayerFailingOneRead.failed = True
            await asyncio.sleep(0.2)
            raise ConnectionError("connection reset by peer")
        return await super().receive(channel)
