"""A level's relay starts and stops its tasks without hanging a socket.

Against a real Redis and channels_redis. The layers of
``tests.misbehaving_layers`` add what a library can do while a task is
cancelled: turn the cancellation into another error (channels_redis' own
clean-up asserts its receive lock is free), take its time, or return as if
it had not been cancelled. Whatever they do, a socket's disconnect does not
wait on the relay, and the relay ends.
"""

import asyncio

import pytest
from channels.layers import get_channel_layer

from tests.conftest import channel_layers
from webapp.builder.keys import group_name
from webapp.maps.relay import NO_BUILDER, LevelRelay
from webapp.maps.tasks import STOP_WAIT
from webapp.topology import service

LEVEL = "container"


class Socket:
    """What a relay calls on a map socket, recorded."""

    def __init__(self):
        self.errors: list[str] = []
        self.heard = asyncio.Event()

    async def catch_up(self, snapshot, diffs, seq):
        self.heard.set()

    async def topology_update(self, seq, frames):
        self.heard.set()

    async def feed_error(self, message):
        self.errors.append(message)
        self.heard.set()


@pytest.fixture
def web_tier(settings, redis_client, redis_server):
    """The web tier on the emptied test Redis; ``layer(backend)`` picks the
    Channels layer. No builder runs: a relay tells its sockets so."""
    settings.REDIS_URL = redis_server.url
    service.redis_client.cache_clear()

    def layer(backend="channels_redis.core.RedisChannelLayer"):
        settings.CHANNEL_LAYERS = channel_layers(redis_server.url, backend=backend)

    yield layer
    service.redis_client.cache_clear()


async def joined(socket) -> LevelRelay:
    """The socket joined to this loop's relay, which is following the group
    (it has told the socket that no builder has stored a graph)."""
    relay = LevelRelay.for_level(LEVEL)
    await relay.join(socket)
    await asyncio.wait_for(socket.heard.wait(), 10)
    assert socket.errors == [NO_BUILDER]
    return relay


def test_a_relay_left_on_a_closed_loop_is_not_met_on_the_next(web_tier):
    # A socket that never left: its loop closed with the relay's tasks. A
    # socket on a new loop (the next test, a restarted server) must be
    # served by a relay of its own, not by one whose tasks can never run.
    web_tier()
    first = asyncio.run(joined(Socket()))

    async def second():
        socket = Socket()
        relay = await joined(socket)
        await relay.leave(socket)
        return relay

    assert asyncio.run(second()) is not first


@pytest.mark.parametrize("backend", ["channels_redis.core.RedisChannelLayer",
                                     "tests.misbehaving_layers.LayerFailingOnCancel"])
async def test_the_last_socket_leaving_ends_the_relays_tasks(web_tier, backend,
                                                             redis_client):
    # Even when the cancellation comes back as another error (redis-py ends a
    # cancelled blocking read with its timeout): retried, the relay would
    # follow the group for good, with nobody to relay to, and a loop closing
    # (a server's shutdown, the end of a test) would wait on it for ever.
    web_tier(backend)
    socket = Socket()
    relay = await joined(socket)
    follow, watching = relay.task, relay.watching
    await asyncio.sleep(1.0)  # well into channels_redis' blocking read
    await relay.leave(socket)
    assert relay.task is None and relay.watching is None
    await asyncio.wait({follow, watching}, timeout=STOP_WAIT)
    assert follow.done() and watching.done()
    # Out of the level's group: no diff is sent to its channel any more.
    members = get_channel_layer()._group_key(group_name(LEVEL))
    assert redis_client.zcard(members) == 0
    # And it follows again for the next socket.
    await joined(Socket())


async def test_a_socket_leaving_does_not_wait_for_the_relay_to_end(web_tier):
    # A task blocked in channels_redis' receive ends only when its read does
    # (here a second later): a disconnect that waited for it was cancelled
    # half done by a client that gives it a second.
    web_tier("tests.misbehaving_layers.LayerSlowToCancel")
    socket = Socket()
    relay = await joined(socket)
    follow = relay.task
    await asyncio.wait_for(relay.leave(socket), 0.5)
    assert not follow.done()
    # A socket joining meanwhile is served by a task of its own.
    await joined(Socket())
    assert relay.task is not follow
    await asyncio.wait({follow}, timeout=STOP_WAIT)
    assert follow.done()


async def test_a_relay_stopped_as_it_joins_the_group_ends(web_tier):
    # A socket that connects and closes at once cancels the relay while it
    # joins the group, and channels_redis' group_add (over redis-py) can
    # return normally when cancelled. Going on, the relay followed the group
    # for good, and its loop could not close (found by test_consumer's
    # origin checks, which hung now and then).
    web_tier("tests.misbehaving_layers.LayerSwallowingCancel")
    socket = Socket()
    relay = LevelRelay.for_level(LEVEL)
    await relay.join(socket)
    follow = relay.task
    await asyncio.sleep(0.1)  # in group_add
    await relay.leave(socket)
    # At once, not when a blocked read it went on to times out (5 s).
    await asyncio.wait({follow}, timeout=2)
    assert follow.done()
