"""The analyzer against a real Redis: reports written through RedisReporter,
statuses, causes and events read back, webhooks to a real local HTTP server."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collector.reporter import HostReport, RedisReporter, add_flow
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from webapp.anomalies.analyzer import Analyzer
from webapp.anomalies.config import Config
from webapp.anomalies.events import read_events
from webapp.anomalies.keys import AnalysisKeys, edge_target
from webapp.anomalies.merge import apply_analysis, read_analysis
from webapp.anomalies.notify import WebhookNotifier
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state

PREFIX = "portolan"
KEYS = Keys(PREFIX)
AKEYS = AnalysisKeys(PREFIX)
CONF = Config(warmup_seconds=3, warmup_samples=3, raise_after=2, clear_after=3,
              baseline_halflife=30)
IPS = {"front": "10.1.0.2", "api": "10.1.0.3", "db": "10.1.0.4"}
PORTS = {"api": 8080, "db": 5432}


def cid(name):
    return container_node_id("h", name)


class Cluster:
    """One host with front -> api -> db, reported once per (fake) second."""

    def __init__(self, url):
        self.reporter = RedisReporter(reporter_client(url), KEYS)
        self.states = {n: ("running", 0) for n in IPS}
        self.metrics = {n: {"restart_count": 0, "memory_oom_kills": 0,
                            "cpu_cores": 0.1} for n in IPS}

    def report(self, now, refused=()):
        flows = Counter()
        for client, server in (("front", "api"), ("api", "db")):
            key = FlowKey(cid(client), "out", IPS[server], PORTS[server])
            if server in refused:
                add_flow(flows, key, {"failed": 5, "failed_refused": 5})
            else:
                add_flow(flows, key, {"connections": 5, "bytes_sent": 500,
                                      "bytes_received": 5000,
                                      "connect_latency_us_sum": 5000,
                                      "connect_latency_count": 5})
        containers = [
            ContainerRecord(id=n, name=n, state=self.states[n][0],
                            exit_code=self.states[n][1], ips=[ip],
                            metrics=dict(self.metrics[n]))
            for n, ip in IPS.items()
        ]
        assert self.reporter.report(HostReport(
            host=HostRecord(id="h", hostname="h"), containers=containers,
            addrs={ip: cid(n) for n, ip in IPS.items()}, flows=flows,
            interval=1.0), now=now)


def statuses(client):
    return {k.decode(): json.loads(v)
            for k, v in client.hgetall(AKEYS.status).items()}


def run(analyzer, cluster, start, seconds, **kw):
    """Report and analyse once a (fake) second; a check that raised fails it."""
    results = []
    for t in range(start, start + seconds):
        cluster.report(T0 + t, **kw)
        result = analyzer.step(now=T0 + t)
        assert result is None or result.failed_checks == [], result.failed_checks
        results.append(result)
    return results


T0 = time.time()


def test_healthy_chain_stays_green_then_a_stopped_db_is_the_likely_cause(
        redis_backend):
    url, redis_client = redis_backend
    cluster = Cluster(url)
    analyzer = Analyzer(redis_client, PREFIX, CONF, owner="a1")
    for result in run(analyzer, cluster, 0, 15):
        assert result.findings == [] and result.statuses == {}
        assert result.failed_checks == []
    assert statuses(redis_client) == {}
    assert read_events(redis_client, PREFIX) == []

    cluster.states["db"] = ("exited", 0)
    run(analyzer, cluster, 15, 3, refused={"db"})
    st = statuses(redis_client)
    edge = st[edge_target(cid("api"), cid("db"))]
    assert edge["status"] == "critical"
    assert any("connection refused" in r for r in edge["reasons"])
    assert st[cid("db")]["status"] == "critical"
    assert "exited while 1 client(s) still connect" in st[cid("db")]["reasons"][0]
    assert st["host:h"]["status"] == "critical"  # rolled up
    assert edge_target(cid("front"), cid("api")) not in st
    _, causes = read_analysis(redis_client, PREFIX)
    assert causes[0]["target"] == cid("db") and causes[0]["rank"] == 1
    events = read_events(redis_client, PREFIX)
    started = {(e["target"], e["rule"]) for e in events if e["kind"] == "started"}
    assert (cid("db"), "service_down") in started
    assert (edge_target(cid("api"), cid("db")), "connect_failed") in started
    # The caller of the stopped db is degraded (a warning), not at fault.
    assert (cid("api"), "dependency_failing") in started
    assert all(e["reason"] and e["severity"] == "critical" for e in events
               if e["rule"] != "dependency_failing")

    # The map: the live graph with the analysis merged in.
    G = build_graph(read_state(redis_client, KEYS, 30, now=T0 + 17), "container")
    H = apply_analysis(G, *read_analysis(redis_client, PREFIX))
    assert H.nodes[cid("db")]["likely_cause"] and H.nodes[cid("db")]["cause_rank"] == 1
    assert H.edges[cid("api"), cid("db")]["status"] == "critical"

    # db comes back: the anomalies end after the clean evaluations, once each.
    cluster.states["db"] = ("running", 0)
    run(analyzer, cluster, 18, int(CONF.failure_window) + CONF.clear_after + 2)
    assert statuses(redis_client) == {}
    ended = [e for e in read_events(redis_client, PREFIX) if e["kind"] == "ended"]
    assert sorted((e["target"], e["rule"]) for e in ended) == sorted(started)


def test_oom_kill_is_red_at_once(redis_client, redis_server):
    cluster = Cluster(redis_server.url)
    analyzer = Analyzer(redis_client, PREFIX, CONF, owner="a1")
    run(analyzer, cluster, 0, 3)
    cluster.metrics["api"].update(memory_oom_kills=1, memory_limit_bytes=64 << 20)
    run(analyzer, cluster, 3, 1)
    entry = statuses(redis_client)[cid("api")]
    assert entry["status"] == "critical"
    assert entry["reasons"] == ["OOM killed at its 64.0 MiB memory limit"]


def test_restart_loop_and_nonzero_exit(redis_client, redis_server):
    cluster = Cluster(redis_server.url)
    analyzer = Analyzer(redis_client, PREFIX, CONF, owner="a1")
    for t in range(4):
        cluster.metrics["front"]["restart_count"] = t
        run(analyzer, cluster, t, 1)
    cluster.states["db"] = ("exited", 1)
    run(analyzer, cluster, 4, 1)
    st = statuses(redis_client)
    assert "restart loop: restarted 3 times" in st[cid("front")]["reasons"][0]
    assert "exited with code 1" in st[cid("db")]["reasons"]


def test_only_one_analyzer_writes_and_a_takeover_repeats_nothing(redis_backend):
    url, redis_client = redis_backend
    cluster = Cluster(url)
    first = Analyzer(redis_client, PREFIX, CONF, owner="a1")
    second = Analyzer(redis_client, PREFIX, CONF, owner="a2")
    cluster.states["db"] = ("exited", 3)
    cluster.report(T0)
    assert first.step(now=T0) is not None
    assert second.step(now=T0) is None
    assert redis_client.get(AKEYS.lock) == b"a1"
    before = read_events(redis_client, PREFIX)
    assert [e["kind"] for e in before] == ["started"]
    first.release()
    cluster.report(T0 + 1)
    result = second.step(now=T0 + 1)
    assert result is not None and result.events == [] and result.changes == []
    assert read_events(redis_client, PREFIX) == before
    assert statuses(redis_client)[cid("db")]["status"] == "critical"


def test_event_stream_is_capped(redis_client, redis_server):
    cluster = Cluster(redis_server.url)
    conf = Config(warmup_seconds=3, warmup_samples=3, raise_after=1,
                  clear_after=1, events_maxlen=3)
    analyzer = Analyzer(redis_client, PREFIX, conf, owner="a1")
    for t in range(8):
        cluster.states["db"] = ("exited", 1) if t % 2 else ("running", 0)
        run(analyzer, cluster, t, 1)
    assert redis_client.xlen(AKEYS.events) == 3


class Hook(BaseHTTPRequestHandler):
    """Answers 500 to the first POST, then 200; records every POST."""

    received: list = []
    fail_first = True

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.headers["X-Portolan-Event"], body))
        if type(self).fail_first:
            type(self).fail_first = False
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received, Hook.fail_first = [], True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhook_gets_one_post_per_state_change_with_retries(
        redis_client, redis_server, webhook):
    notifier = WebhookNotifier(webhook, timeout=2, retries=3, backoff=0.05)
    cluster = Cluster(redis_server.url)
    analyzer = Analyzer(redis_client, PREFIX, CONF, notifier=notifier, owner="a1")
    changes = []
    run(analyzer, cluster, 0, 5)
    cluster.states["db"] = ("exited", 0)
    for result in run(analyzer, cluster, 5, 6, refused={"db"}):
        changes.extend(result.changes)
    cluster.states["db"] = ("running", 0)
    for result in run(analyzer, cluster, 11, int(CONF.failure_window) + 6):
        changes.extend(result.changes)
    assert notifier.flush(10)
    notifier.close()
    # db and the api -> db edge each went ok -> critical -> ok, api (which
    # calls db) ok -> warning -> ok.
    assert sorted((c["target"], c["from"], c["to"]) for c in changes) == sorted([
        (cid("db"), "ok", "critical"), (cid("db"), "critical", "ok"),
        (cid("api"), "ok", "warning"), (cid("api"), "warning", "ok"),
        (edge_target(cid("api"), cid("db")), "ok", "critical"),
        (edge_target(cid("api"), cid("db")), "critical", "ok"),
    ])
    ids = [event_id for event_id, _ in Hook.received]
    assert len(set(ids)) == len(changes)  # one notification per change ...
    assert len(ids) == len(changes) + 1  # ... the first delivered on a retry
    assert ids[0] == ids[1]
    bodies = {event_id: body for event_id, body in Hook.received}
    down = [b for b in bodies.values()
            if b["target"] == cid("db") and b["to"] == "critical"]
    assert len(down) == 1 and down[0]["type"] == "status_change"
    assert down[0]["likely_cause"]["target"] == cid("db")
    assert notifier.sent == len(changes) and notifier.failed == 0


def test_webhook_gives_up_after_its_retries(webhook):
    Hook.fail_first = True
    notifier = WebhookNotifier(webhook.replace("/hook", "/x"), timeout=1,
                               retries=0, backoff=0.01)
    notifier.notify({"target": "t"})
    assert notifier.flush(5)
    notifier.close()
    assert (notifier.sent, notifier.failed, len(Hook.received)) == (0, 1, 1)


def test_analyze_command_runs_the_loop(redis_client, redis_server, settings,
                                      caplog):
    from django.core.management import call_command

    from webapp.anomalies.management.commands.analyze import Command

    settings.REDIS_URL = redis_server.url
    cluster = Cluster(redis_server.url)
    cluster.states["db"] = ("exited", 2)
    cluster.report(time.time())
    call_command(Command(), "--duration", "0.5", "--interval", "0.1")
    assert statuses(redis_client)[cid("db")]["status"] == "critical"
    assert redis_client.get(AKEYS.lock) is None  # released on the way out
    errors = [r.getMessage() for r in caplog.records
              if r.name.startswith("portolan.anomalies") and r.levelname == "ERROR"]
    assert errors == [], errors  # no check (nor step) failed
