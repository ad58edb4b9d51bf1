"""A worker's shared background tasks: one per event loop, stopped in the background.

A level's relay and the login watch are shared by every map socket of a web
worker, and the last socket to leave stops their tasks. Three things hold:

- They belong to the running event loop. A Daphne worker runs one, so there
  is one of each per worker; but a task or a lock left from a loop that has
  closed (tests run a loop each) can never run again, and whoever met it would
  wait on it for good.
- A socket's disconnect does not wait for them to end. A task blocked in
  channels_redis' receive ends only when its BZPOPMIN returns, up to 5 s
  after it is cancelled; a disconnect that waited was itself cancelled by
  whoever gave it a second (a test client, a server shutting down), half done.
- A task ends once cancelled, even where a library swallowed the cancellation
  (channels_redis' ``group_add`` over redis-py returns normally) or turned it
  into another error (a blocked read's timeout, 5 s later): each task calls
  ``end_if_cancelled`` after such calls and before retrying an error. One
  that has not ended ``STOP_WAIT`` seconds after is reported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("portolan.maps.tasks")

__all__ = ["STOP_WAIT", "end_if_cancelled", "on_this_loop", "stop"]

STOP_WAIT = 10.0  # seconds a cancelled task has to end before it is reported

T = TypeVar("T")

_stopping: set[asyncio.Task] = set()  # held until they end: the loop holds weakly


def on_this_loop(registry: weakref.WeakKeyDictionary, key, make: Callable[[], T]) -> T:
    """The object kept in ``registry`` under ``key`` for the running loop;
    ``make()`` makes it on first use. A closed loop's objects go with it."""
    objects = registry.setdefault(asyncio.get_running_loop(), {})
    if key not in objects:
        objects[key] = make()
    return objects[key]


def end_if_cancelled(cause: BaseException | None = None) -> None:
    """Raise ``CancelledError`` if the running task has been cancelled, even
    though what it awaited returned (or raised ``cause``) instead."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError from cause


def stop(task: asyncio.Task, what: str) -> None:
    """Cancel ``task``, to end in the background; say so if it ends with an
    error, or has not ended after ``STOP_WAIT`` seconds."""
    task.cancel()
    if task.done():
        return
    _stopping.add(task)
    overdue = asyncio.get_running_loop().call_later(
        STOP_WAIT, functools.partial(_overdue, what, task))
    task.add_done_callback(functools.partial(_ended, what, overdue))


def _overdue(what: str, task: asyncio.Task) -> None:
    if not task.done():
        log.warning("%s has not ended %.0f s after it was cancelled", what, STOP_WAIT)


def _ended(what: str, overdue: asyncio.TimerHandle, task: asyncio.Task) -> None:
    _stopping.discard(task)
    overdue.cancel()
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error when cancelled: %r", what,
                    task.exception())
