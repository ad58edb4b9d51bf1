"""The map socket against a real Redis: auth, origin, snapshot, live diffs.

A graph builder (``webapp.builder``, run in a thread here) builds the graph;
the consumer relays what it stored and published.
"""

import asyncio
import json
from collections import Counter
from importlib import import_module
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, HostRecord, Keys, container_node_id
from tests.conftest import RedisServer, channel_layers, free_port
from tests.integration.builder_thread import BuilderThread
from webapp.asgi import application, origin_allowed
from webapp.maps.diff import apply_diff
from webapp.maps.frames import unpack_frame
from webapp.topology import service

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
SITE = (b"host", b"localhost")  # the page's (and so the socket's) Host
HOST = "sock-h1"


def web_tier_on(settings, url: str, channel_url: str):
    """Point the web tier at ``url`` and Channels' own layer at ``channel_url``,
    with a graph builder running on ``url``, for one test."""
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = channel_layers(channel_url)
    service.redis_client.cache_clear()
    builder = BuilderThread(url).start()
    yield SimpleNamespace(url=url, builder=builder)
    builder.stop()
    service.redis_client.cache_clear()


@pytest.fixture
def live_redis(settings, redis_client, redis_server):
    """The web tier, its Channels layer and a graph builder on the emptied
    test Redis."""
    yield from web_tier_on(settings, redis_server.url, redis_server.url)


@pytest.fixture
def live_backend(settings, redis_backend, redis_server):
    """The web tier on one Redis, then on the Redis Cluster, emptied; the
    Channels layer stays on one Redis (channels_redis has no cluster mode)."""
    yield from web_tier_on(settings, redis_backend[0], redis_server.url)


@pytest.fixture
def session_cookie(db):
    user = get_user_model().objects.create_user("grace", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class Communicator(WebsocketCommunicator):
    """A test socket whose handshake may take up to 10 s: the default 1 s
    failed an accepted socket on a loaded CI machine (the consumer's login
    and origin checks read the session from the database)."""

    async def connect(self, timeout=10):
        return await super().connect(timeout)


def communicator(path="/ws/topology/?level=container", headers=(ORIGIN,), host=SITE):
    headers = [*headers, host] if host else list(headers)
    return Communicator(application, path, headers=headers)


class Host:
    """One fake collector writing through the real reporter."""

    def __init__(self, url, node_ttl: float = 30.0):
        self.reporter = RedisReporter(reporter_client(url), Keys("portolan"),
                                      node_ttl=node_ttl)
        self.containers = []

    def add(self, cid, name):
        self.containers.append(ContainerRecord(id=cid, name=name, state="running"))
        assert self.reporter.report(
            HostReport(
                host=HostRecord(id=HOST),
                containers=list(self.containers),
                flows=Counter(),
            )
        )


async def receive_message(comm, timeout):
    """The next message's JSON: snapshots and diffs come in binary frames
    (zlib), errors in text frames."""
    frame = await comm.receive_from(timeout=timeout)
    return json.loads(unpack_frame(frame) if isinstance(frame, bytes) else frame)


async def receive_until(comm, predicate, timeout):
    """Messages until one matches ``predicate`` (returned) or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while (left := deadline - loop.time()) > 0:
        try:
            message = await receive_message(comm, left)
        except TimeoutError:
            break
        seen.append(message)
        if predicate(message):
            return message
    raise AssertionError(f"no matching message within {timeout} s; got {seen!r}")


async def test_anonymous_socket_is_refused(live_redis):
    comm = communicator()
    connected, code = await comm.connect()
    assert not connected
    assert code == 4401
    await comm.disconnect()


async def test_foreign_origin_is_refused(live_redis, session_cookie):
    comm = communicator(
        headers=[(b"origin", b"http://evil.example"), (b"cookie", session_cookie)]
    )
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


@pytest.mark.parametrize(
    ("origin", "host", "trusted", "accepted"),
    [
        (b"http://localhost:8000", b"localhost:8000", [], True),
        (b"http://LOCALHOST:8000", b"localhost:8000", [], True),
        # Another app on the same host name: same site, so the cookie comes
        # along, but not the same origin (cross-site WebSocket hijacking).
        (b"http://localhost:1337", b"localhost:8000", [], False),
        (b"http://localhost", b"localhost:8000", [], False),
        (b"https://localhost:8000", b"localhost:8000", [], False),
        (b"null", b"localhost:8000", [], False),
        (None, b"localhost:8000", [], False),
        (b"http://localhost:8000", None, [], False),
        # A reverse proxy: the Host is the proxy's upstream name.
        (b"https://localhost", b"127.0.0.1:8000", ["https://localhost"], True),
        (b"https://localhost", b"127.0.0.1:8000", ["https://*.localhost"], True),
        (b"https://localhost", b"127.0.0.1:8000", ["http://*.localhost"], False),
        (b"https://localhost:1337", b"127.0.0.1:8000", ["https://localhost"], False),
    ],
)
async def test_only_same_or_trusted_origins_are_accepted(
    live_redis, session_cookie, settings, origin, host, trusted, accepted
):
    settings.CSRF_TRUSTED_ORIGINS = trusted
    headers = [(b"cookie", session_cookie)] + ([(b"origin", origin)] if origin else [])
    comm = communicator(headers=headers, host=host and (b"host", host))
    try:
        assert (await comm.connect())[0] == accepted
    finally:
        await comm.disconnect()


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(b"https://localhost:8443", True), (b"http://localhost:8443", False)],
)
def test_a_wss_socket_takes_only_its_https_origin(origin, accepted):
    scope = {
        "type": "websocket",
        "scheme": "wss",
        "headers": [(b"origin", origin), (b"host", b"localhost:8443")],
    }
    assert origin_allowed(scope) == accepted


async def test_bad_level_is_refused(live_redis, session_cookie):
    comm = communicator(
        "/ws/topology/?level=galaxy", headers=[ORIGIN, (b"cookie", session_cookie)]
    )
    connected, code = await comm.connect()
    assert not connected
    assert code == 4400
    await comm.disconnect()


async def test_snapshot_then_diff_for_a_new_container(live_backend, session_cookie):
    host = Host(live_backend.url)
    await sync_to_async(host.add)("c1", "pt-first")
    await live_backend.builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    connected, _ = await comm.connect()
    assert connected
    try:
        snapshot = await receive_message(comm, 5)
        assert snapshot["type"] == "snapshot"
        assert snapshot["level"] == "container"
        names = {n["id"]: n["name"] for n in snapshot["graph"]["nodes"]}
        assert names[container_node_id(HOST, "c1")] == "pt-first"

        await sync_to_async(host.add)("c2", "pt-second")
        diff = await receive_until(
            comm,
            lambda m: (
                m["type"] == "diff"
                and any(n["name"] == "pt-second" for n in m["added_nodes"])
            ),
            timeout=2.0,
        )
        assert [n["id"] for n in diff["added_nodes"]] == [container_node_id(HOST, "c2")]
        assert diff["removed_nodes"] == []
    finally:
        await comm.disconnect()
    host.reporter.client.close()


async def test_snapshots_and_diffs_are_compressed_binary_frames_made_once(
        live_redis, session_cookie):
    # Text frames were UTF-8 encoded and copied per socket by Daphne: at
    # 10,000 containers and 50 maps, more than a tenth of a core (issue 17).
    # Now every socket is sent the very frame the builder or relay made.
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-frame-1")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    first = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    second = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    try:
        assert (await first.connect())[0] and (await second.connect())[0]
        snapshots = [await comm.receive_from(timeout=5) for comm in (first, second)]
        assert all(isinstance(frame, bytes) for frame in snapshots)
        assert snapshots[0] is snapshots[1]  # compressed once, for both
        assert json.loads(unpack_frame(snapshots[0]))["type"] == "snapshot"

        await sync_to_async(host.add)("c2", "pt-frame-2")
        diffs = []
        for comm in (first, second):
            while True:
                frame = await comm.receive_from(timeout=5)
                assert isinstance(frame, bytes), frame
                message = json.loads(unpack_frame(frame))
                if message["type"] == "diff" and any(
                        n["name"] == "pt-frame-2" for n in message["added_nodes"]):
                    diffs.append(frame)
                    break
        assert diffs[0] is diffs[1]  # as published by the builder, once
    finally:
        await first.disconnect()
        await second.disconnect()
    host.reporter.client.close()


async def test_expired_host_is_removed_without_a_message(settings, redis_client,
                                                        redis_server, session_cookie):
    # A host whose collector stops: its keys lapse by their TTL and its
    # collectors entry ages past NODE_TTL; nobody publishes anything.
    settings.REDIS_URL = redis_server.url
    settings.CHANNEL_LAYERS = channel_layers(redis_server.url)
    service.redis_client.cache_clear()
    builder = await sync_to_async(BuilderThread(redis_server.url, node_ttl=1).start)()
    host = Host(redis_server.url, node_ttl=1)
    await sync_to_async(host.add)("c1", "pt-fading")
    await builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        snapshot = await receive_message(comm, 5)
        assert any(n["name"] == "pt-fading" for n in snapshot["graph"]["nodes"])
        removed = set()

        def both_gone(message):
            if message["type"] == "diff":
                removed.update(message["removed_nodes"])
            return {container_node_id(HOST, "c1"), f"host:{HOST}"} <= removed

        assert await receive_until(comm, both_gone, timeout=6), removed
    finally:
        await comm.disconnect()
        await sync_to_async(builder.stop)()
    host.reporter.client.close()


async def test_a_silent_collector_is_shown_as_not_reporting(
        settings, redis_client, redis_server, session_cookie):
    # Its host stays on the map (its keys live NODE_TTL) but greyed out, with
    # since when, as soon as it has been silent for COLLECTOR_TTL.
    settings.REDIS_URL = redis_server.url
    settings.CHANNEL_LAYERS = channel_layers(redis_server.url)
    service.redis_client.cache_clear()
    builder = await sync_to_async(
        BuilderThread(redis_server.url, collector_ttl=1.5).start)()
    host = Host(redis_server.url)
    await sync_to_async(host.add)("c1", "pt-silent")
    await builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        snapshot = await receive_until(comm, lambda m: m["type"] == "snapshot", 5)
        nodes = {n["id"]: n for n in snapshot["graph"]["nodes"]}
        # No analyzer runs here: "unknown" (issue 20), but reporting.
        assert nodes[f"host:{HOST}"]["status"] == "unknown"
        assert "reporting" not in nodes[f"host:{HOST}"]
        # The map as the client keeps it: the snapshot, each diff merged in
        # (a node's changed keys alone, or the node whole when keys went).
        shown = {"graph": snapshot["graph"]}

        def host_changed(message):
            if message["type"] != "diff":
                return False
            shown["graph"] = apply_diff(shown["graph"], message)
            return any(n["id"] == f"host:{HOST}" for n in
                       message["changed_nodes"] + message["updated_nodes"])

        await receive_until(comm, host_changed, timeout=5)
        nodes = {n["id"]: n for n in shown["graph"]["nodes"]}
        silent = nodes[f"host:{HOST}"]
        assert silent["status"] == "unknown" and silent["reporting"] is False
        assert "no report from its collector since" in silent["reasons"][-1]
        assert nodes[container_node_id(HOST, "c1")]["reporting"] is False
        assert nodes[container_node_id(HOST, "c1")]["status"] == "unknown"
        # Reporting again: back to normal ("reporting" is gone: sent whole).
        await sync_to_async(host.add)("c2", "pt-back")
        diff = await receive_until(
            comm, lambda m: m["type"] == "diff" and any(
                n["id"] == f"host:{HOST}" for n in m["changed_nodes"]), timeout=5)
        back = {n["id"]: n for n in diff["changed_nodes"]}[f"host:{HOST}"]
        assert back["status"] == "unknown" and "reporting" not in back
        assert not any("no report" in r for r in back["reasons"])
    finally:
        await comm.disconnect()
        await sync_to_async(builder.stop)()
    host.reporter.client.close()


async def test_unreachable_redis_sends_an_error_and_keeps_the_socket(
    settings, session_cookie
):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    service.redis_client.cache_clear()
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    try:
        assert (await comm.connect())[0]
        frame = await comm.receive_from(timeout=5)
        assert isinstance(frame, str)  # small control messages stay text
        message = json.loads(frame)
        assert message["type"] == "error"
        assert "Redis" in message["message"]
        # Still open: no close frame follows.
        assert await comm.receive_nothing(timeout=0.5)
    finally:
        await comm.disconnect()
        service.redis_client.cache_clear()


async def test_socket_survives_a_redis_restart(settings, session_cookie):
    server = RedisServer()
    server.start()
    settings.REDIS_URL = server.url
    settings.CHANNEL_LAYERS = channel_layers(server.url)
    service.redis_client.cache_clear()
    builder = await sync_to_async(BuilderThread(server.url).start)()
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    try:
        await builder.wait_stored()
        assert (await comm.connect())[0]
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        await sync_to_async(server.stop)()
        error = await receive_until(comm, lambda m: m["type"] == "error", timeout=5)
        assert "Redis" in error["message"]
        await sync_to_async(server.start)()
        host = Host(server.url)
        await sync_to_async(host.add)("c1", "pt-back")
        # A fresh snapshot after the outage; the container is in it, or in a
        # diff right after it if the socket reconnected before the write. The
        # relay retries with a backoff capped at 10 s (``group_follow.BACKOFF``): by
        # when the outage ended it may be waiting most of that (3.2 or 10.3 s
        # measured; an 8 s bound failed one run in five).
        snapshot = await receive_until(
            comm, lambda m: m["type"] == "snapshot", timeout=15
        )
        if not any(n["name"] == "pt-back" for n in snapshot["graph"]["nodes"]):
            await receive_until(
                comm,
                lambda m: any(n["name"] == "pt-back" for n in m["added_nodes"]),
                timeout=3,
            )
        host.reporter.client.close()
    finally:
        await comm.disconnect()
        await sync_to_async(builder.stop)()
        service.redis_client.cache_clear()
        server.stop()


async def test_bursts_are_batched(live_redis, session_cookie):
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c0", "pt-burst-0")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c0"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(1, 21):  # 20 reports in about a second
            await sync_to_async(host.add)(f"c{i}", f"pt-burst-{i}")
            await asyncio.sleep(0.05)
        added, diffs = set(), 0
        while len(added) < 20:
            diff = await receive_until(comm, lambda m: m["type"] == "diff", timeout=3)
            diffs += 1
            added |= {n["name"] for n in diff["added_nodes"]}
        elapsed = loop.time() - started
        assert added == {f"pt-burst-{i}" for i in range(1, 21)}
        assert diffs <= 4 * elapsed + 1
    finally:
        await comm.disconnect()
    host.reporter.client.close()


async def test_sockets_at_one_level_share_one_relay(live_redis, session_cookie):
    from webapp.maps import relay

    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-shared-1")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    comms = [communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
             for _ in range(5)]
    try:
        for comm in comms:
            assert (await comm.connect())[0]
            assert (await receive_message(comm, 5))["type"] == "snapshot"
        level_relay = relay.LevelRelay.for_level("container")
        assert len(level_relay.sockets) == 5
        updates = level_relay.updates
        await sync_to_async(host.add)("c2", "pt-shared-2")
        for comm in comms:
            diff = await receive_until(comm, lambda m: m["type"] == "diff", timeout=3)
            assert [n["name"] for n in diff["added_nodes"]] == ["pt-shared-2"]
        # One group message reached this worker for five sockets.
        assert level_relay.updates - updates == 1
    finally:
        for comm in comms:
            await comm.disconnect()
    host.reporter.client.close()
    assert not relay.LevelRelay.for_level("container").sockets


async def test_stray_frames_are_ignored_and_the_socket_stays_a_member(
    live_redis, session_cookie
):
    # The JSON consumer's receive raised on these, ending the consumer without
    # disconnect(): the dead socket stayed in its relay, one per bad frame.
    from webapp.maps import relay

    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-stray-1")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        await comm.send_to(text_data="not json {")
        await comm.send_to(bytes_data=b"\x00\xff")
        await comm.send_to(text_data='{"type": "hello"}')
        await asyncio.sleep(0.2)
        assert not comm.future.done(), "the consumer ended"
        assert len(relay.LevelRelay.for_level("container").sockets) == 1
        # Still following the map: the next change comes as a diff.
        await sync_to_async(host.add)("c2", "pt-stray-2")
        await receive_until(
            comm,
            lambda m: (
                m["type"] == "diff"
                and any(n["name"] == "pt-stray-2" for n in m["added_nodes"])
            ),
            timeout=3,
        )
    finally:
        await comm.disconnect()
    host.reporter.client.close()
    assert not relay.LevelRelay.for_level("container").sockets


def _log_out(key):
    import_module(django_settings.SESSION_ENGINE).SessionStore(key).delete()


def _change_password(key):
    user = get_user_model().objects.get(username="grace")
    user.set_password("pw-for-tests-2")
    user.save()


def _deactivate(key):
    get_user_model().objects.filter(username="grace").update(is_active=False)


@pytest.mark.parametrize("end_login", [_log_out, _change_password, _deactivate])
async def test_a_socket_whose_login_ended_is_closed_before_the_next_update(
    live_redis, session_cookie, monkeypatch, end_login
):
    # The login was checked on connect only: the socket kept streaming diffs.
    from webapp.maps import consumers, relay

    monkeypatch.setattr(consumers, "LOGIN_RECHECK_INTERVAL", 0.0)
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-login-1")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        key = session_cookie.decode().removeprefix("sessionid=")
        await sync_to_async(end_login)(key)
        await sync_to_async(host.add)("c2", "pt-login-2")
        # The very next output is the close: no diff, no snapshot first.
        assert await comm.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": consumers.CLOSE_UNAUTHENTICATED,
        }
    finally:
        await comm.disconnect()
    host.reporter.client.close()
    assert not relay.LevelRelay.for_level("container").sockets


def _save_new_password(key):
    user = get_user_model().objects.get(username="grace")
    user.set_password("pw-for-tests-2")
    user.save(update_fields=["password"])


def _save_deactivated(key):
    user = get_user_model().objects.get(username="grace")
    user.is_active = False
    user.save()


def _delete_user(key):
    get_user_model().objects.get(username="grace").delete()


def _log_out_by_request(key):
    client = Client()
    client.cookies["sessionid"] = key
    assert client.post("/logout/").status_code == 302


@pytest.mark.parametrize("end_login", [_save_new_password, _save_deactivated,
                                       _delete_user, _log_out_by_request])
async def test_a_socket_whose_login_ended_is_closed_at_once(
    live_redis, session_cookie, end_login
):
    """No update needed and no 30 s wait: the change sends a message through
    the real channel layer to every worker's login watch (here, this one's)."""
    from webapp.maps import consumers, login_watch

    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        await asyncio.wait_for(login_watch.LoginWatch.for_worker().ready.wait(), 5)
        key = session_cookie.decode().removeprefix("sessionid=")
        await sync_to_async(end_login)(key)
        assert await close_within(comm, timeout=5) == {
            "type": "websocket.close",
            "code": consumers.CLOSE_UNAUTHENTICATED,
        }
    finally:
        await comm.disconnect()
    assert not login_watch.LoginWatch.for_worker().sockets


async def test_a_socket_of_another_session_stays_open_after_a_logout(
    live_redis, session_cookie
):
    from webapp.maps import login_watch

    def other_session_logs_out():
        other = Client()
        other.force_login(get_user_model().objects.get(username="grace"))
        assert other.post("/logout/").status_code == 302

    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        await asyncio.wait_for(login_watch.LoginWatch.for_worker().ready.wait(), 5)
        await sync_to_async(other_session_logs_out)()
        assert await close_within(comm, timeout=2) is None
    finally:
        await comm.disconnect()


async def close_within(comm, timeout):
    """The socket's close output within ``timeout``, skipping its messages;
    None if it stays open (read off the queue: a communicator's timed-out
    receive would cancel the consumer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        while not comm.output_queue.empty():
            output = comm.output_queue.get_nowait()
            if output["type"] == "websocket.close":
                return output
        await asyncio.sleep(0.05)
    return None


async def test_a_socket_still_logged_in_keeps_its_updates_when_rechecked(
    live_redis, session_cookie, monkeypatch
):
    from webapp.maps import consumers

    monkeypatch.setattr(consumers, "LOGIN_RECHECK_INTERVAL", 0.0)
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-still-1")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    assert (await comm.connect())[0]
    try:
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        await sync_to_async(host.add)("c2", "pt-still-2")
        diff = await receive_until(comm, lambda m: m["type"] == "diff", timeout=3)
        assert [n["name"] for n in diff["added_nodes"]] == ["pt-still-2"]
    finally:
        await comm.disconnect()
    host.reporter.client.close()


async def test_a_socket_catching_up_lets_other_handshakes_run():
    """Daphne writes a sent message without returning to its loop: a socket
    sending a 10,000-container snapshot in one go held the loop for seconds
    and Daphne refused the handshakes waiting meanwhile (403 after its 5 s
    connect timeout). Each message now gives the loop a turn."""
    from webapp.maps.consumers import TopologyConsumer

    order = []
    consumer = TopologyConsumer()
    consumer.closed = False
    consumer.login_checked = asyncio.get_running_loop().time()

    async def send(bytes_data=None, **_):  # as Daphne: no await inside
        order.append("sent")

    consumer.send = send

    async def handshake():
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    await asyncio.gather(
        consumer.catch_up([b"{}"] * 3, [(2, [b"{}"] * 2)], 2), handshake())
    assert order.index("other") < 2 and order[-1] == "sent", order
    assert consumer.seq == 2


async def test_a_late_joiner_gets_a_newer_snapshot_and_the_others_only_diffs(
        live_redis, session_cookie, monkeypatch):
    # After many diffs a joiner is sent the newer stored snapshot; the sockets
    # already open hold the same steps and must not get it again (at 50 maps
    # of 10,000 containers that re-sent ~2 GB per joiner).
    from webapp.maps import relay

    monkeypatch.setattr(relay, "RELOAD_AFTER", 2)
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c0", "pt-early")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c0"))
    first = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    late = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    try:
        assert (await first.connect())[0]
        assert (await receive_message(first, 5))["type"] == "snapshot"
        for n in range(1, 5):
            await sync_to_async(host.add)(f"c{n}", f"pt-step-{n}")
            await receive_until(first, lambda m, n=n: m["type"] == "diff" and any(
                x["name"] == f"pt-step-{n}" for x in m["added_nodes"]), timeout=5)
        assert (await late.connect())[0]
        await receive_until(late, lambda m: m["type"] == "snapshot", timeout=5)
        await sync_to_async(host.add)("c9", "pt-after")
        seen = []
        await receive_until(first, lambda m: seen.append(m["type"]) or any(
            x["name"] == "pt-after" for x in m.get("added_nodes", [])), timeout=5)
        assert set(seen) == {"diff"}, seen
    finally:
        await first.disconnect()
        await late.disconnect()
    host.reporter.client.close()


async def test_a_quiet_level_keeps_its_socket_without_errors(live_redis,
                                                            session_cookie):
    # No diff for longer than channels_redis' 5 s BZPOPMIN, which races
    # redis-py's 5 s default read timeout: a timeout there is no outage (the
    # relay sent an error, then the snapshot again, to every socket).
    host = Host(live_redis.url)
    await sync_to_async(host.add)("c1", "pt-quiet")
    await live_redis.builder.wait_holds(container_node_id(HOST, "c1"))
    comm = communicator(headers=[ORIGIN, (b"cookie", session_cookie)])
    try:
        assert (await comm.connect())[0]
        assert (await receive_message(comm, 5))["type"] == "snapshot"
        assert await comm.receive_nothing(timeout=8, interval=0.5)
    finally:
        await comm.disconnect()
    host.reporter.client.close()
