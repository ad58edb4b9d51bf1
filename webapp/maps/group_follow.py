"""A worker's membership of one Channels group, kept until its task is cancelled.

The relays and the login watch each follow a group on one channel for the
whole worker. Following means more than ``group_add`` and a receive loop:

- A quiet group is not an outage. channels_redis blocks 5 s in BZPOPMIN and
  redis-py's read times out at the same 5 s, so a group with no message for
  5 s raises ``redis.exceptions.TimeoutError``: the member joins again at
  once, on a fresh channel (the old one may still hold the late message).
- channels_redis expires a member after a day: it joins again every
  ``GROUP_RENEW`` seconds.
- Redis going away, or a handler failing, is retried with a capped backoff,
  and the caller hears of it (``failed``) to tell its sockets.
- However the task ends (cancelled, or its cancellation come back as an
  error: see ``webapp.maps.tasks``), its channel leaves the group: a member
  left behind would be sent every message until channels_redis expires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis
from channels.layers import get_channel_layer
from redis.backoff import ExponentialBackoff

from collector.redis_client import REDIS_ERRORS
from webapp.maps.tasks import end_if_cancelled

log = logging.getLogger("portolan.maps.group_follow")

__all__ = ["BACKOFF", "GROUP_RENEW", "follow_group"]

GROUP_RENEW = 3600.0  # seconds: re-join the group before channels_redis expires it
BACKOFF = ExponentialBackoff(cap=10.0, base=0.5)  # between failed attempts

Handler = Callable[[dict], Awaitable[None]]


async def follow_group(group: str, handle: Handler, what: str, *,
                       joined: Callable[[], Awaitable[None]] | None = None,
                       failed: Callable[[Exception], Awaitable[None]] | None = None,
                       backoff: ExponentialBackoff = BACKOFF) -> None:
    """Be a member of ``group`` and ``await handle(message)`` for each message,
    until the task is cancelled; ``joined()`` after each (re)join, and
    ``failed(error)`` when Redis or a handler fails (then a retry, backed
    off). ``what`` names the follower in the log."""
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    failures = 0
    channel = None  # this task's own: a stopped follower may still be ending
    try:
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel()
                await layer.group_add(group, channel)
                if joined is not None:
                    await joined()
                failures = 0
                renewed = loop.time()
                while True:
                    end_if_cancelled()  # group_add swallows a cancellation
                    try:
                        message = await layer.receive(channel)
                    except redis.exceptions.TimeoutError as exc:
                        end_if_cancelled(exc)  # a cancelled read, timed out
                        log.info("%s: quiet group, joining again", what)
                        with contextlib.suppress(*REDIS_ERRORS):
                            await layer.group_discard(group, channel)
                        channel = None
                        break
                    await handle(message)
                    if loop.time() - renewed > GROUP_RENEW:
                        await layer.group_add(group, channel)
                        renewed = loop.time()
                continue  # a quiet group left above: join again at once
            except Exception as exc:  # noqa: BLE001 - a follower must never die of it
                end_if_cancelled(exc)  # its cancellation, come back as an error
                if isinstance(exc, REDIS_ERRORS):
                    log.warning("%s: Redis unreachable: %s", what, exc,
                                exc_info=log.isEnabledFor(logging.DEBUG))
                else:
                    log.exception("%s failed", what)
                if failed is not None:
                    await failed(exc)
            await asyncio.sleep(backoff.compute(failures))
            failures += 1
    finally:
        if channel is not None:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)
