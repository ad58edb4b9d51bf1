"""Every input of the web tier fuzzed (Hypothesis) against the real app and a
real Redis: the graph and node API parameters, the Authorization header, the
token form, the socket's query and every frame a client can send.

The promise is the same everywhere: bad input gets a clear answer (a 4xx with
a JSON error, a socket closed with its code) and never a 500, a crash or a
dead socket.
"""

from __future__ import annotations

import json
import string

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.schema import container_node_id
from tests.conftest import channel_layers
from tests.integration.test_web_auth import write_host
from webapp.asgi import application
from webapp.topology import service

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SOCKET_FUZZ = settings(max_examples=60, deadline=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])
HOST = "fuzz-h1"
NODE_IDS = [f"host:{HOST}", container_node_id(HOST, "c1"),
            container_node_id(HOST, "c1") + ":80", "external:203.0.113.0/24"]

# Anything a query string can carry, including what is not valid UTF-8 or
# percent-encoding once decoded.
any_text = st.text(max_size=80)
numberish = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
    st.sampled_from(["", "nan", "-inf", "1e400", "0x10", "١٢", "+5", " 3 ",
                     "2026-01-01T00:00:00Z", "2026-13-45T99:99", "yesterday"]),
    any_text,
)
node_ids = st.one_of(st.sampled_from(NODE_IDS), any_text,
                     st.sampled_from(NODE_IDS).flatmap(
                         lambda n: st.text(max_size=10).map(lambda t: n + t)))
# Raw: as a server hands it over, bytes read as latin-1 (a WSGI environ can
# hold nothing else), so \xff and unpaired % escapes included.
raw_query = st.text(string.printable + "%\u00e9\u00ff\u0000", max_size=120)


@pytest.fixture
def live_redis(live_redis):
    """The web tier on the test Redis (tests/conftest.py), one host written."""
    write_host(live_redis.url, host=HOST)
    return live_redis


@pytest.fixture
def viewer(db):
    user = get_user_model().objects.create_user("fuzzer", password="pw-fuzz-1")
    client = Client()
    client.force_login(user)
    return client


def assert_clear_answer(response, allowed=(200, 400, 404)):
    assert response.status_code in allowed, (response.status_code,
                                             response.content[:300])
    body = response.json()
    if response.status_code != 200:
        assert isinstance(body["error"], str) and body["error"]


@pytest.mark.django_db
@FUZZ
@given(level=st.one_of(st.sampled_from(service.LEVELS), any_text), at=numberish,
       extra=st.dictionaries(any_text, any_text, max_size=3))
def test_graph_api_parameters(viewer, live_redis, level, at, extra):
    assert_clear_answer(viewer.get("/api/graph/",
                                   {**extra, "level": level, "at": at}))


@pytest.mark.django_db
@FUZZ
@given(node=node_ids, window=numberish)
def test_node_api_parameters(viewer, live_redis, node, window):
    assert_clear_answer(viewer.get("/api/node/", {"id": node, "window": window}))


@pytest.mark.django_db
@FUZZ
@given(path=st.sampled_from(["/api/graph/", "/api/node/"]), query=raw_query)
def test_raw_query_strings(viewer, live_redis, path, query):
    assert_clear_answer(viewer.get(path, QUERY_STRING=query))


@pytest.mark.django_db
@FUZZ
@given(header=st.text(st.characters(max_codepoint=0xFF), max_size=200))
def test_authorization_header(live_redis, header):
    # No session: any header is a 401 (a token it is not) or a 401 for no login.
    response = Client().get("/api/graph/?level=host", HTTP_AUTHORIZATION=header)
    assert_clear_answer(response, allowed=(401,))


@pytest.mark.django_db
@FUZZ
@given(name=st.text(max_size=150))
def test_token_form_name(viewer, name):
    response = viewer.post("/account/tokens/", {"name": name})
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert 'id="new-token"' in response.content.decode()


# ------------------------------------------------------------------ socket


@pytest.fixture
def socket_site(settings, redis_client, redis_server, transactional_db):
    """The ASGI app on the test Redis (its Channels layer too), and a session."""
    settings.REDIS_URL = redis_server.url
    settings.CHANNEL_LAYERS = channel_layers(redis_server.url, "portolan-fuzz")
    service.redis_client.cache_clear()
    user = get_user_model().objects.create_user("sockfuzz", password="pw-fuzz-1")
    client = Client()
    client.force_login(user)
    yield [(b"origin", b"http://localhost"), (b"host", b"localhost"),
           (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    service.redis_client.cache_clear()


frames = st.lists(
    st.one_of(
        st.text(max_size=300).map(lambda t: {"text": t}),
        st.binary(max_size=300).map(lambda b: {"bytes": b}),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False)
            | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=10), inner, max_size=4),
            max_leaves=12,
        ).map(lambda v: {"text": json.dumps(v)}),
    ),
    min_size=1, max_size=6,
)


async def outputs(comm, timeout=0.05) -> list[dict]:
    """What the socket sent until it fell quiet for ``timeout`` seconds."""
    seen = []
    # receive_output's own timeout would cancel the application: peek first.
    while not await comm.receive_nothing(timeout=timeout):
        seen.append(await comm.receive_output())
    return seen


@SOCKET_FUZZ
@given(query=raw_query)
async def test_socket_query_is_accepted_or_refused_with_a_code(socket_site, query):
    comm = WebsocketCommunicator(application, "/ws/topology/?" + query,
                                 headers=socket_site)
    connected, code = await comm.connect(timeout=5)
    if connected:
        await comm.disconnect()
    else:
        assert code == 4400, code  # a level it does not know
    assert not comm.future.done() or comm.future.exception() is None


@SOCKET_FUZZ
@given(frames=frames)
async def test_socket_frames_are_ignored_and_it_stays_open(socket_site, frames):
    comm = WebsocketCommunicator(application, "/ws/topology/?level=host",
                                 headers=socket_site)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    for frame in frames:  # as the server hands them over: empty ones too
        await comm.send_input({"type": "websocket.receive", **frame})
    sent = await outputs(comm)
    assert all(m["type"] == "websocket.send" for m in sent), sent
    # Still serving: the consumer's task has not ended (nor raised).
    assert not comm.future.done()
    await comm.disconnect()
