"""Every read of the web tier, on one Redis and on a Redis Cluster: /healthz,
the graph API at each level, live and past, and the details panel. A command
that crossed slots would fail here (and the cluster counts CROSSSLOT refusals,
see the redis_backend fixture)."""

import time

import pytest

from tests.integration.test_node_api import HOST, write_history
from tests.integration.test_web_auth import user_client  # noqa: F401
from webapp.anomalies.analyzer import Analyzer
from webapp.anomalies.config import load_config
from webapp.topology import service

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_on_backend(settings, redis_backend):
    settings.REDIS_URL, client = redis_backend
    service.redis_client.cache_clear()
    yield settings.REDIS_URL, client
    service.redis_client.cache_clear()


def test_every_web_read_works(web_on_backend, user_client):  # noqa: F811
    url, client = web_on_backend
    _, server_node = write_history(url)
    Analyzer(client, "portolan", load_config(), owner="w1").step()
    health = user_client.get("/healthz")
    assert health.status_code == 200
    assert [c["host"] for c in health.json()["collectors"]] == [HOST]
    for level in ("host", "container", "service"):
        response = user_client.get("/api/graph/", {"level": level})
        assert response.status_code == 200 and response.json()["nodes"], level
    past = user_client.get("/api/graph/", {"level": "container", "at": time.time()})
    assert past.status_code == 200
    assert server_node in {n["id"] for n in past.json()["nodes"]}
    details = user_client.get("/api/node/", {"id": server_node})
    assert details.status_code == 200
    # The analyzer judged the exit 137 and the graph carries its verdict.
    graph = user_client.get("/api/graph/", {"level": "container"}).json()
    status = {n["id"]: n.get("status") for n in graph["nodes"]}
    assert status[server_node] == "critical"
