"""A worker's group member (``webapp.maps.group_follow``) rides out what the
relays and the login watch meet: a failing handler, a read that fails, a quiet
group, its own end. Against a real Redis and channels_redis."""

import asyncio
import types

import pytest
from channels.layers import get_channel_layer

from tests.conftest import channel_layers
from tests.misbehaving_layers import LayerFailingOneRead
from webapp.accounts.ended_logins import GROUP, MESSAGE_TYPE
from webapp.maps.group_follow import follow_group
from webapp.maps.login_watch import LoginWatch
from webapp.maps.tasks import STOP_WAIT

TEST_GROUP = "portolan-test-follow"


@pytest.fixture
def layer(settings, redis_server, redis_client):
    """``layer(backend)`` sets the Channels layer on the emptied test Redis."""
    LayerFailingOneRead.failed = False

    def use(backend="channels_redis.core.RedisChannelLayer"):
        settings.CHANNEL_LAYERS = channel_layers(redis_server.url, backend=backend)
        return get_channel_layer()

    return use


def members(redis_client, group: str) -> int:
    return redis_client.zcard(get_channel_layer()._group_key(group))


async def until(predicate, timeout: float) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def test_a_failing_handler_is_reported_and_the_member_goes_on(layer,
                                                                    redis_client):
    channels = layer()
    handled, failures = [], []
    joins = asyncio.Event()

    async def handle(message):
        handled.append(message["n"])
        if message["n"] == 1:
            raise KeyError("a malformed message")

    async def failed(exc):
        failures.append(exc)

    async def joined():
        joins.set()

    task = asyncio.create_task(follow_group(TEST_GROUP, handle, "test follower",
                                            joined=joined, failed=failed))
    try:
        await asyncio.wait_for(joins.wait(), 5)
        await channels.group_send(TEST_GROUP, {"type": "t", "n": 1})
        await until(lambda: failures, 5)
        assert isinstance(failures[0], KeyError)
        joins.clear()
        await asyncio.wait_for(joins.wait(), 5)  # joined again, backed off
        await channels.group_send(TEST_GROUP, {"type": "t", "n": 2})
        await until(lambda: 2 in handled, 5)
        assert handled == [1, 2]
        assert members(redis_client, TEST_GROUP) == 1
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_WAIT)
    assert task.done()
    assert members(redis_client, TEST_GROUP) == 0  # left however it ended


async def test_a_quiet_group_is_joined_again_on_one_channel(layer, redis_client):
    # channels_redis' 5 s BZPOPMIN against redis-py's 5 s read timeout: a
    # group quiet for 5 s raises TimeoutError. The member joins again at once
    # and still hears the group, as one member, not two.
    channels = layer()
    handled, failures = [], []

    async def handle(message):
        handled.append(message["n"])

    async def failed(exc):
        failures.append(exc)

    task = asyncio.create_task(follow_group(TEST_GROUP, handle, "test follower",
                                            failed=failed))
    try:
        await until(lambda: members(redis_client, TEST_GROUP) == 1, 5)
        await asyncio.sleep(6.5)
        await channels.group_send(TEST_GROUP, {"type": "t", "n": 1})
        await until(lambda: handled, 3)
        assert failures == []  # quiet is not an outage
        assert members(redis_client, TEST_GROUP) == 1
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_WAIT)
    assert members(redis_client, TEST_GROUP) == 0


async def test_the_login_watch_stays_one_member_through_a_failed_read(layer,
                                                                      redis_client):
    # A read that fails (a dropped connection) is retried on the same
    # channel. Before the watch shared the relays' follower, it took a new
    # channel each time and left the old one in the group, sent every
    # message for a day.
    channels = layer("tests.misbehaving_layers.LayerFailingOneRead")
    checked = asyncio.Event()

    class Socket:
        scope = {"user": types.SimpleNamespace(pk=7)}

        async def check_login(self):
            checked.set()

    socket = Socket()
    watch = LoginWatch.for_worker()
    watch.add(socket)
    task = watch.task
    try:
        await until(lambda: LayerFailingOneRead.failed, 5)
        await asyncio.sleep(1.0)  # the backoff, and joined again
        await channels.group_send(GROUP, {"type": MESSAGE_TYPE, "user": "7"})
        await asyncio.wait_for(checked.wait(), 5)
        assert members(redis_client, GROUP) == 1
    finally:
        await watch.remove(socket)
        await asyncio.wait({task}, timeout=STOP_WAIT)
    assert task.done()
    assert members(redis_client, GROUP) == 0
