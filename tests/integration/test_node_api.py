"""GET /api/node/: the details panel's data from a real Redis."""

import time
from collections import Counter

import pytest
from django.test import Client

from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.integration.test_web_auth import user_client  # noqa: F401

pytestmark = pytest.mark.django_db

HOST = "panel-h"


def write_history(url, reports=6):
    """A client and a server; the server exits with 137 in the last report."""
    reporter = RedisReporter(reporter_client(url), Keys("portolan"),
                             history=HistoryPolicy(step=0.0001))
    client_node = container_node_id(HOST, "cli")
    server_node = container_node_id(HOST, "srv")
    out = FlowKey(client_node, "out", "10.5.0.3", 80)
    inbound = FlowKey(server_node, "in", "10.5.0.2", 80)
    # Reports 2 s apart, ending now: a snapshot's rates are over its step.
    start = time.time() - 2 * reports
    for i in range(reports):
        last = i == reports - 1
        containers = [
            ContainerRecord(id="cli", name="client", state="running", ips=["10.5.0.2"]),
            ContainerRecord(
                id="srv", name="server", state="exited" if last else "running",
                exit_code=137 if last else 0, ips=["10.5.0.3"],
                metrics={"cpu_cores": 0.25, "memory_working_set_bytes": 1000 + i},
                processes=[{"pid": 7, "command": "httpd", "user": "root",
                            "port": 80, "proto": "tcp"}],
            ),
        ]
        reporter.report(HostReport(
            host=HostRecord(id=HOST, hostname=HOST),
            containers=containers,
            addrs={"10.5.0.2": client_node, "10.5.0.3": server_node},
            flows=Counter({(out, "connections"): 4, (out, "failed"): 1,
                           (inbound, "accepts"): 4}),
            interval=2.0,
        ), now=start + 2 * (i + 1))
    return client_node, server_node


def test_node_details_have_series_edges_events_processes(user_client, live_redis):  # noqa: F811
    client_node, server_node = write_history(live_redis.url)
    body = user_client.get("/api/node/", {"id": server_node}).json()
    assert body["node"]["name"] == "server" and body["node"]["status"] == "critical"
    assert [e["source"] for e in body["inbound"]] == [client_node]
    assert body["inbound"][0]["connections"] == 24
    series = body["series"]
    assert len(series["ts"]) == 6
    assert series["connections_per_s_in"] == [2.0] * 6
    assert series["memory_bytes"] == [1000, 1001, 1002, 1003, 1004, 1005]
    assert [e["message"] for e in body["events"]] == ["exited with code 137"]
    assert body["processes"][0]["command"] == "httpd"

    client_body = user_client.get("/api/node/", {"id": client_node}).json()
    assert client_body["series"]["connections_per_s_out"] == [2.0] * 6
    assert client_body["series"]["failed_per_s_out"] == [0.5] * 6
    assert client_body["series"]["cpu_cores"] == [None] * 6
    assert [e["target"] for e in client_body["outbound"]] == [server_node]


def test_node_api_needs_login_and_a_real_node(user_client, live_redis):  # noqa: F811
    write_history(live_redis.url, reports=1)
    assert Client().get("/api/node/", {"id": "host:panel-h"}).status_code == 401
    assert user_client.get("/api/node/", {"id": "nonsense"}).status_code == 400
    assert user_client.get("/api/node/", {"id": "host:nowhere"}).status_code == 404
    assert user_client.get("/api/node/", {"id": "host:panel-h",
                                          "window": "x"}).status_code == 400
    assert user_client.get("/api/node/", {"id": "host:panel-h"}).status_code == 200


@pytest.mark.parametrize("window", ["nan", "inf", "-inf"])
def test_node_api_rejects_a_non_finite_window(
    user_client, live_redis, window  # noqa: F811
):
    # nan slipped through the clamping and Redis refused it: a false 503.
    write_history(live_redis.url, reports=1)
    response = user_client.get("/api/node/",
                               {"id": "host:panel-h", "window": window})
    assert response.status_code == 400
    assert "finite" in response.json()["error"]


def test_node_details_at_a_past_time(user_client, live_redis):  # noqa: F811
    """?at=: the node as the past map had it, its series up to then (issue 23)."""
    reporter = RedisReporter(reporter_client(live_redis.url), Keys("portolan"))
    server_node = container_node_id(HOST, "srv")
    inbound = FlowKey(server_node, "in", "10.5.0.2", 80)
    t0 = 1_900_000_000.0
    for t in range(0, 61):
        state = "running" if t < 40 else "exited"
        reporter.report(HostReport(
            host=HostRecord(id=HOST, hostname=HOST),
            containers=[ContainerRecord(id="srv", name="server", state=state,
                                        exit_code=0 if t < 40 else 137,
                                        ips=["10.5.0.3"])],
            addrs={"10.5.0.3": server_node},
            flows=Counter({(inbound, "accepts"): 2} if t < 20 else {}),
        ), now=t0 + t)
    body = user_client.get("/api/node/", {"id": server_node, "window": "900",
                                          "at": str(t0 + 32)}).json()
    assert body["at"] == t0 + 32
    assert body["node"]["state"] == "running"  # it exited at 40
    assert body["series"]["ts"] and max(body["series"]["ts"]) <= t0 + 32
    assert body["series"]["ts"][-1] == t0 + 30
    assert body["events"] == []
    # Before the server existed: not on that map.
    assert user_client.get("/api/node/", {"id": server_node,
                                          "at": str(t0 - 100)}).status_code == 404
    assert user_client.get("/api/node/", {"id": server_node,
                                          "at": "yesterday"}).status_code == 400
