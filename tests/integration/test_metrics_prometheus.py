"""/metrics end to end: Debian's Prometheus scrapes the web app with its token.

Two real containers talk over TCP; the real collector (eBPF) writes the counts
to a real Redis; Daphne serves /metrics; a Prometheus server on loopback
scrapes it with the bearer token, and a query through its HTTP API returns the
edge's exact connection count. The token gates are checked on the real
server, and the families' content on Redis records written by the real
RedisReporter. All traffic stays on loopback and the test's containers.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import free_port, require, wait_collector_in_ebpf_mode, wait_for
from tests.processes import LoggedProcess
from webapp.metrics import registry as metrics_registry
from webapp.topology import service

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-metrics-token-0123456789abcdef"
HOST_ID = "metrics-host"
N = 40


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback only
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def web_env(redis_server, tmp_path):
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "REDIS_URL": redis_server.url,
        "PORTOLAN_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
        "PORTOLAN_HOST_ID": HOST_ID,
        "PORTOLAN_INTERVAL": "0.5",
        "PORTOLAN_METRICS_TOKEN": TOKEN,
        "DEBUG": "false",
    }


@pytest.fixture
def daphne(web_env):
    """Daphne serving the real ASGI app on a free loopback port."""
    port = free_port()
    proc = LoggedProcess("test_metrics_prometheus-daphne", [
        Path(sys.executable).parent / "daphne", "-b", "127.0.0.1", "-p", port,
        "webapp.asgi:application"], cwd=ROOT, env=web_env)
    url = f"http://127.0.0.1:{port}"
    with proc:
        up = wait_for(lambda: http_get(f"{url}/healthz")[0] == 200
                      or not proc.alive, timeout=60, interval=0.2)
        assert up, proc.describe()
        proc.assert_alive("daphne did not start")
        yield url
        proc.assert_alive("daphne died during the test")


@pytest.fixture
def prometheus(daphne, tmp_path):
    """Debian's Prometheus on loopback, scraping Daphne's /metrics every
    second: job ``portolan`` with the token, job ``no-token`` without."""
    binary = shutil.which("prometheus")
    require(binary is not None, "Debian's prometheus not installed")
    target = urllib.parse.urlsplit(daphne).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "portolan", "metrics_path": "/metrics",
             "authorization": {"type": "Bearer", "credentials": TOKEN},
             "static_configs": [{"targets": [target]}]},
            {"job_name": "no-token", "metrics_path": "/metrics",
             "static_configs": [{"targets": [target]}]},
        ],
    }))
    port = free_port()
    proc = LoggedProcess("test_metrics_prometheus-prometheus", [
        binary, f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    with proc:
        ready = wait_for(lambda: http_get(f"{url}/-/ready")[0] == 200
                         or not proc.alive, timeout=60, interval=0.2)
        assert ready, proc.describe()
        proc.assert_alive("prometheus did not start")
        yield url
        proc.assert_alive("prometheus died during the test")


def query(prometheus_url: str, promql: str) -> list[dict]:
    """An instant query through Prometheus' HTTP API: its result vector."""
    status, body = http_get(
        f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def scalar(prometheus_url: str, promql: str) -> float | None:
    result = query(prometheus_url, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.mark.ebpf
@pytest.mark.docker
def test_prometheus_scrapes_the_traced_edge_with_its_exact_count(
    ebpf_ready, containers, redis_client, web_env, daphne, prometheus
):
    server = containers.run("httpd -f -p 8080 -h /var/www")
    server_ip = containers.ip(server)
    with LoggedProcess("test_metrics_prometheus-collector",
                       [sys.executable, "manage.py", "collect", "--duration", "300"],
                       cwd=ROOT, env=web_env) as collector:
        wait_collector_in_ebpf_mode(redis_client, HOST_ID, collector)
        client = containers.run(
            f"for i in $(seq {N}); do wget -q -O /dev/null http://{server_ip}:8080/ "
            "|| exit 1; done")
        assert client.wait(timeout=60)["StatusCode"] == 0

        edge = (f'portolan_edge_connections_total{{job="portolan",'
                f'source="{client.name}",source_host="{HOST_ID}",'
                f'source_kind="container",target="{server.name}",'
                f'target_host="{HOST_ID}",target_kind="container"}}')
        value = wait_for(lambda: scalar(prometheus, edge) == N, timeout=30,
                         interval=0.5)
        assert value, (scalar(prometheus, edge), query(
            prometheus, '{__name__=~"portolan_edge_.*"}'))
        assert scalar(prometheus, edge.replace(
            "portolan_edge_connections_total",
            "portolan_edge_connection_failures_total")) == 0
        assert scalar(prometheus, edge.replace(
            "portolan_edge_connections_total",
            "portolan_edge_received_bytes_total")) > 0
        assert scalar(prometheus, f'portolan_container_connections_total{{'
                      f'job="portolan",container="{server.name}",'
                      f'direction="in"}}') == N
        assert scalar(prometheus, f'portolan_collector_up{{host="{HOST_ID}"}}') == 1
        assert scalar(prometheus, f'portolan_collector_info{{host="{HOST_ID}",'
                      'mode="ebpf"}') == 1
        assert scalar(prometheus, 'up{job="portolan"}') == 1
        # The job without the token gets 401 on every scrape: its target is down
        # (waited for: Prometheus staggers the targets' first scrapes).
        wait_for(lambda: scalar(prometheus, 'up{job="no-token"}') is not None,
                 timeout=30, interval=0.5)
        assert scalar(prometheus, 'up{job="no-token"}') == 0, query(
            prometheus, 'up')
        collector.assert_alive("the collector died during the test")


def test_metrics_answers_401_without_the_right_token(daphne):
    status, _ = http_get(f"{daphne}/metrics")
    assert status == 401
    status, _ = http_get(f"{daphne}/metrics", token="wrong-" + TOKEN)
    assert status == 401
    status, body = http_get(f"{daphne}/metrics", token=TOKEN)
    assert status == 200 and "portolan_redis_up 1.0" in body


# ------------------------------------------------- the view, on the test Redis


@pytest.fixture
def metrics_on(settings, redis_client, redis_server):
    settings.REDIS_URL = redis_server.url
    settings.PORTOLAN_METRICS = {**settings.PORTOLAN_METRICS, "TOKEN": TOKEN}
    service.redis_client.cache_clear()
    metrics_registry.registry.cache_clear()
    yield settings
    service.redis_client.cache_clear()


def write_report(url: str, flows: Counter) -> None:
    reporter = RedisReporter(reporter_client(url), Keys("portolan"))
    host = HostRecord(id="rep-host", hostname="rep-host", mode="procfs",
                      metrics={"tracer_lost_total": 7})
    records = [ContainerRecord(id="a1", name="api", state="running",
                               ips=["10.88.0.2"], metrics={"cpu_cores": 0.5}),
               ContainerRecord(id="d1", name="db", state="running",
                               ips=["10.88.0.3"])]
    addrs = {r.ips[0]: container_node_id("rep-host", r.id) for r in records}
    assert reporter.report(HostReport(host=host, containers=records, addrs=addrs,
                                      flows=flows))
    reporter.client.close()


def test_the_view_exports_what_the_reporter_wrote(client, metrics_on, redis_server):
    key = FlowKey(container_node_id("rep-host", "a1"), "out", "10.88.0.3", 5432)
    write_report(redis_server.url, Counter({(key, "connections"): 12,
                                            (key, "failed"): 3,
                                            (key, "failed_refused"): 3}))
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    body = response.content.decode()
    edge = ('source="api",source_host="rep-host",source_kind="container",'
            'target="db",target_host="rep-host",target_kind="container"')
    assert f"portolan_edge_connections_total{{{edge}}} 12.0" in body
    assert f"portolan_edge_connection_failures_total{{{edge}}} 3.0" in body
    assert 'portolan_container_cpu_cores{container="api",host="rep-host"} 0.5' in body
    assert 'portolan_collector_lost_counts_total{host="rep-host"} 7.0' in body
    assert ('portolan_collector_info{host="rep-host",kernel="",mode="procfs"} 1.0'
            in body)


def test_metrics_off_without_a_token_answers_404(client, settings):
    settings.PORTOLAN_METRICS = {**settings.PORTOLAN_METRICS, "TOKEN": ""}
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
                      ).status_code == 404


def test_redis_down_is_a_series_not_an_error(client, metrics_on):
    metrics_on.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    service.redis_client.cache_clear()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "portolan_redis_up 0.0" in response.content.decode()
