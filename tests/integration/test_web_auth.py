"""HTTP side of the web tier: login gates, the graph API and /healthz."""

from collections import Counter

import pytest
from django.contrib.auth import get_user_model

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, HostRecord, Keys, container_node_id
from tests.conftest import free_port
from webapp.topology import service

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_client(client):
    user = get_user_model().objects.create_user("ada", password="pw-for-tests-1")
    client.force_login(user)
    return client


def write_host(url, host="web-h1", containers=(("c1", "pt-web"),)):
    reporter = RedisReporter(reporter_client(url), Keys("portolan"))
    report = HostReport(
        host=HostRecord(id=host, hostname=host, mode="procfs"),
        containers=[
            ContainerRecord(id=cid, name=name, state="running", ips=[f"10.77.0.{i}"])
            for i, (cid, name) in enumerate(containers, start=2)
        ],
        addrs={
            f"10.77.0.{i}": container_node_id(host, cid)
            for i, (cid, _) in enumerate(containers, start=2)
        },
        flows=Counter(),
    )
    assert reporter.report(report)
    reporter.client.close()


def test_map_redirects_anonymous_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


def test_login_page_renders_with_csrf(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


def test_map_page_passes_config_as_json_script(user_client):
    response = user_client.get("/?level=host")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<script id="portolan-config" type="application/json">' in body
    assert '"level": "host"' in body
    assert '"socketPath": "/ws/topology/"' in body
    assert "/static/portolan/map.js" in body


def test_map_page_ignores_an_unknown_level(user_client):
    body = user_client.get("/?level=<script>").content.decode()
    assert '"level": "host"' in body  # the default: zoomed out, as on a map
    assert "<script>" not in body  # the page's own script tags all have attributes


def test_api_graph_needs_login(client, live_redis):
    response = client.get("/api/graph/")
    assert response.status_code == 401


def test_api_graph_returns_node_link_json(user_client, live_redis):
    write_host(live_redis.url)
    response = user_client.get("/api/graph/?level=container")
    assert response.status_code == 200
    data = response.json()
    assert {"nodes", "links", "directed"} <= data.keys()
    containers = [n for n in data["nodes"] if n["type"] == "container"]
    assert [(n["id"], n["name"]) for n in containers] == [
        (container_node_id("web-h1", "c1"), "pt-web")
    ]
    # No analyzer runs here: the API says it does not know, not "ok".
    assert containers[0]["status"] == "unknown"
    assert containers[0]["reasons"] == ["status unknown: no analyzer is running"]
    assert containers[0]["parent"] == "host:web-h1"


def test_api_graph_rejects_a_bad_level(user_client, live_redis):
    response = user_client.get("/api/graph/?level=galaxy")
    assert response.status_code == 400
    assert "level" in response.json()["error"]


@pytest.mark.parametrize("at", ["nan", "inf", "-inf"])
def test_api_graph_rejects_a_non_finite_time(user_client, live_redis, at):
    # nan slipped through to Redis as a score: a false "Redis unreachable" 503.
    write_host(live_redis.url)
    response = user_client.get("/api/graph/", {"level": "host", "at": at})
    assert response.status_code == 400
    assert "finite" in response.json()["error"]


def test_healthz_lists_collectors_to_users_and_counts_them_to_anyone(
        client, live_redis, django_user_model):
    write_host(live_redis.url, host="web-h2")
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 200
    # No login: no host names for whoever can reach the port.
    assert anonymous.json() == {"redis": "ok", "collectors": 1, "rule_failures": []}
    client.force_login(django_user_model.objects.create_user("ops", password="x"))
    body = client.get("/healthz").json()
    assert body["redis"] == "ok"
    assert [c["host"] for c in body["collectors"]] == ["web-h2"]


def get_with_redis_down(client, settings, url: str):
    """(response, Redis' port) for a GET of ``url`` while nothing answers at
    REDIS_URL."""
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    service.redis_client.cache_clear()
    try:
        return client.get(url), port
    finally:
        service.redis_client.cache_clear()


@pytest.mark.parametrize(("login", "url"), [(False, "/healthz"),
                                            (True, "/api/graph/?level=host")])
def test_503_when_redis_is_down_names_no_address(request, settings, caplog,
                                                 login, url):
    """Redis' address is for the log, not for anyone asking (/healthz needs no
    login)."""
    # One Client per test: asking for user_client logs the plain one in too.
    client = request.getfixturevalue("user_client" if login else "client")
    assert ("_auth_user_id" in client.session) == login
    response, port = get_with_redis_down(client, settings, url)
    assert response.status_code == 503
    assert response.json()["error"] == "Redis unreachable"
    if not login:
        assert response.json() == {"redis": "unreachable", "collectors": 0,
                                   "error": "Redis unreachable"}
    body = response.content.decode()
    assert str(port) not in body and "127.0.0.1" not in body
    assert any(str(port) in r.getMessage() for r in caplog.records)
