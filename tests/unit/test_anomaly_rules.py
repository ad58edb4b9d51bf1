"""Anomaly rules: pure functions over synthetic container graphs."""

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.anomalies import ConfigError
from webapp.anomalies.config import Config, load_config
from webapp.anomalies.keys import edge_target
from webapp.anomalies.memory import Memory, remember
from webapp.anomalies.rules import (
    CHECKS,
    RULES,
    Check,
    Context,
    Finding,
    RuleError,
    evaluate_rules,
    rule,
)

FAST = Config(warmup_seconds=5, warmup_samples=5, baseline_halflife=30)
HOST = "host:h"


def cid(name):
    return f"container:h:{name}"


def graph(containers=(), edges=(), host_metrics=None):
    """A container-level graph as build_graph makes it (contract attributes)."""
    G = nx.DiGraph()
    G.add_node(HOST, id=HOST, type="host", name="h", status="ok", parent=None,
               metrics=host_metrics or {})
    for name, attrs in containers:
        attrs = {"state": "running", "exit_code": 0, "metrics": {}, **attrs}
        G.add_node(cid(name), id=cid(name), type="container", name=name,
                   status="ok", parent=HOST, labels={}, **attrs)
    for u, v, attrs in edges:
        G.add_edge(cid(u), cid(v), **attrs)
    return G


def steady_edge(t, rate=10.0, latency_us=1000, **extra):
    """Cumulative counters and rates of an edge carrying ``rate`` connects/s."""
    n = int(rate * t)
    return {"connections": n, "failed": 0, "connections_per_s": rate,
            "bytes_sent": 100 * n, "bytes_sent_per_s": 100 * rate,
            "bytes_received": 1000 * n, "bytes_received_per_s": 1000 * rate,
            "connect_latency_us_sum": latency_us * n, "connect_latency_count": n,
            **extra}


class Runner:
    """Feeds graphs to the rules one step a second, like the analyzer."""

    def __init__(self, config=FAST):
        self.config = config
        self.memory = Memory.new(config)

    def step(self, G, now):
        """This step's findings; a check that raised fails the test."""
        ctx = Context(self.config, self.memory, now)
        results = evaluate_rules(G, ctx)
        assert results.failed_checks == [], f"checks raised: {results.failed_checks}"
        remember(G, self.memory, self.config, now)
        return results.findings


def by_rule(findings):
    return {f.rule: f for f in findings}


def test_exited_non_zero_is_a_hard_fact():
    G = graph([("job", {"state": "exited", "exit_code": 2}),
               ("done", {"state": "exited", "exit_code": 0})])
    found = Runner().step(G, 0)
    assert [(f.target, f.rule, f.severity, f.hard) for f in found] == [
        (cid("job"), "exited", "critical", True)]
    assert "exited with code 2" in found[0].reason


def test_restart_loop_needs_three_restarts_within_the_window():
    r = Runner(Config(restart_window=300))
    for t, count in enumerate([0, 1, 2]):
        G = graph([("crash", {"metrics": {"restart_count": count}})])
        assert not r.step(G, t)
    found = r.step(graph([("crash", {"metrics": {"restart_count": 3}})]), 3)
    assert by_rule(found)["restart_loop"].hard
    assert "restart loop: restarted 3 times" in found[0].reason
    # Restarts spread over more than the window are no loop.
    r = Runner(Config(restart_window=10))
    for t, count in ((0, 0), (8, 1), (16, 2), (24, 3)):
        assert not r.step(graph([("slow", {"metrics": {"restart_count": count}})]), t)


def test_a_crash_loop_under_way_at_start_stays_red_without_a_gap():
    """The analysis starts while a container already crash-loops (Docker's
    back-off: one restart a minute): red from the first step, and still red
    while the restart history does not yet cover the window."""
    r = Runner(Config(restart_window=300))
    count = 20
    for t in range(400):
        if t % 60 == 30:
            count += 1
        G = graph([("crash", {"state": "restarting",
                              "metrics": {"restart_count": count}})])
        found = by_rule(r.step(G, t))
        assert "restart_loop" in found, t
        if t == 0:
            # A lifetime count is not "in the last 5 min".
            assert found["restart_loop"].reason == \
                "restart loop: restarting, 20 restarts so far"


def test_oom_kill_reason_and_hold():
    r = Runner(Config(oom_hold=30))
    metrics = {"memory_oom_kills": 0, "memory_limit_bytes": 64 << 20}
    assert not r.step(graph([("hog", {"metrics": metrics})]), 0)
    found = r.step(graph([("hog", {"metrics": {**metrics, "memory_oom_kills": 1}})]),
                   1)
    oom = by_rule(found)["oom"]
    assert "OOM killed" in oom.reason and "64.0 MiB" in oom.reason and oom.hard
    # It stays for the hold time, then goes.
    G = graph([("hog", {"metrics": {**metrics, "memory_oom_kills": 1}})])
    assert "oom" in by_rule(r.step(G, 20))
    assert "oom" not in by_rule(r.step(G, 40))


def test_an_old_oom_kill_is_not_replayed_at_first_sight():
    """A fresh analyzer (start, takeover, a host back) sees a lifetime count:
    only a kill after that is news."""
    r = Runner(Config(oom_hold=30))
    metrics = {"memory_oom_kills": 1, "memory_limit_bytes": 64 << 20}
    for t in range(5):
        assert "oom" not in by_rule(r.step(graph([("hog", {"metrics": metrics})]),
                                           t)), t
    G = graph([("hog", {"metrics": {**metrics, "memory_oom_kills": 2}})])
    assert "(2 kills so far)" in by_rule(r.step(G, 5))["oom"].reason


def test_a_container_docker_says_was_oom_killed_is_red_at_first_sight():
    """The count says nothing new at first sight, but Docker's OOMKilled on a
    stopped container does: its red node names the cause, not just exit 137."""
    metrics = {"memory_oom_kills": 1, "oom_killed": True}
    G = graph([("hog", {"state": "exited", "exit_code": 137, "metrics": metrics})])
    assert by_rule(Runner().step(G, 0))["oom"].severity == "critical"


def test_health_memory_and_cpu_rules_with_overridable_thresholds():
    G = graph([("c", {"metrics": {
        "health": "unhealthy", "memory_working_set_bytes": 95,
        "memory_limit_bytes": 100, "cpu_throttled_ratio": 0.4,
        "cpu_limit_cores": 0.5}})])
    found = by_rule(Runner().step(G, 0))
    assert found["health"].reason == "health check failing (unhealthy)"
    assert "95% of" in found["memory"].reason
    assert "CPU throttled in 40% of periods (limit 0.5 cores)" == \
        found["cpu_throttled"].reason
    lenient = Config(memory_ratio=0.99, cpu_throttled_ratio=0.5)
    found = by_rule(Runner(lenient).step(G, 0))
    assert set(found) == {"health"}


@pytest.mark.parametrize(
    ("delta", "severity", "text"),
    [
        ({"failed": 4, "failed_refused": 4}, "critical", "connection refused"),
        ({"failed": 2, "failed_timeout": 2, "connections": 8}, "warning",
         "connection timed out"),
        ({"failed": 1, "failed_unreachable": 1}, "critical", "host unreachable"),
    ],
)
def test_connection_failures_on_an_edge(delta, severity, text):
    r = Runner()
    base = {"connections": 0, "failed": 0, "failed_refused": 0, "failed_timeout": 0,
            "failed_unreachable": 0}
    G0 = graph([("api", {}), ("db", {})], [("api", "db", dict(base))])
    assert not r.step(G0, 0)
    now = {k: base[k] + delta.get(k, 0) for k in base}
    G1 = graph([("api", {}), ("db", {})],
               [("api", "db", {**now, "failed_per_s": delta["failed"]})])
    found = by_rule(r.step(G1, 1))
    edge = found["connect_failed"]
    assert edge.target == edge_target(cid("api"), cid("db"))
    assert edge.severity == severity and text in edge.reason
    assert found["service_failures"].target == cid("db")
    assert text in found["service_failures"].reason


def test_a_stopped_server_that_clients_still_call_is_critical():
    r = Runner()
    edge = {"connections": 50, "failed": 0, "failed_refused": 0}
    G = graph([("api", {}), ("db", {})], [("api", "db", edge)])
    r.step(G, 0)
    G = graph([("api", {}), ("db", {"state": "exited", "exit_code": 0})],
              [("api", "db", {"connections": 50, "failed": 3, "failed_refused": 3,
                              "failed_per_s": 3})])
    found = by_rule(r.step(G, 1))
    assert found["service_down"].severity == "critical"
    assert "exited while 1 client(s) still connect: connection refused from api" \
        == found["service_down"].reason


def test_first_sight_of_an_edge_does_not_replay_old_failures():
    G = graph([("api", {}), ("db", {})],
              [("api", "db", {"connections": 100, "failed": 5, "failed_refused": 5})])
    assert not Runner().step(G, 0)


def run_chain(r, seconds, start=0, rate=10.0, latency=1000, **overrides):
    """front -> api -> db with steady traffic; ``overrides`` change api -> db."""
    found = []
    for t in range(start, start + seconds):
        db_edge = steady_edge(t, rate, latency)
        db_edge.update({k: v(t) if callable(v) else v for k, v in overrides.items()})
        G = graph([("front", {"metrics": {"cpu_cores": 0.2}}),
                   ("api", {"metrics": {"cpu_cores": 0.3}}),
                   ("db", {"metrics": {"cpu_cores": 0.1}})],
                  [("front", "api", steady_edge(t, rate, latency)),
                   ("api", "db", db_edge)])
        found.extend(r.step(G, t))
    return found


def test_traffic_stopped_after_a_healthy_baseline():
    r = Runner()
    assert not run_chain(r, 20)
    frozen = steady_edge(19)
    stopped = {k: frozen[k] for k in frozen if not k.endswith("_per_s")}
    stopped.update({k: 0 for k in frozen if k.endswith("_per_s")})
    found = run_chain(r, 10, start=20, **stopped)
    rules = {f.rule for f in found}
    assert rules == {"traffic_stopped"}
    assert "traffic to db stopped" in next(iter(found)).reason


def test_traffic_of_a_removed_client_container_is_not_stopped_traffic():
    """A recreated or removed client: its old flows remain, so the graph makes
    its node again from the id alone, with no state and status unknown."""
    r = Runner()
    assert not run_chain(r, 20)
    frozen = steady_edge(19)
    stopped = {k: (0 if k.endswith("_per_s") else v) for k, v in frozen.items()}
    for t in range(20, 40):
        G = graph([("db", {})], [("api", "db", stopped)])
        G.nodes[cid("api")].update(id=cid("api"), type="container", name="api",
                                   status="unknown", parent=HOST)
        assert "traffic_stopped" not in by_rule(r.step(G, t)), t


def test_traffic_is_not_judged_during_warm_up():
    r = Runner(Config(warmup_seconds=60, warmup_samples=5))
    run_chain(r, 20)
    found = run_chain(r, 10, start=20, connections_per_s=0, bytes_sent_per_s=0,
                      bytes_received_per_s=0)
    assert not found


def test_slow_connects_against_the_baseline():
    r = Runner()
    assert not run_chain(r, 20)
    # From t=20 every connect of api -> db takes 50 ms instead of 1 ms.
    found = run_chain(
        r, 5, start=20,
        connect_latency_us_sum=lambda t: 1000 * 190 + 50_000 * 10 * (t - 19))
    slow = [f for f in found if f.rule == "slow_connect"]
    assert slow and "slow connects to db" in slow[0].reason


def test_rate_spike_and_cpu_spike():
    r = Runner()
    run_chain(r, 20)
    found = run_chain(r, 1, start=20, connections_per_s=200.0)
    assert {f.rule for f in found} == {"spike_connections_per_s"}
    G = graph([("front", {"metrics": {"cpu_cores": 1.5}})])
    r2 = Runner()
    for t in range(10):
        r2.step(graph([("front", {"metrics": {"cpu_cores": 0.2}})]), t)
    assert "cpu_spike" in by_rule(r2.step(G, 10))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.8, 1.2), min_size=40, max_size=40),
       st.floats(1.0, 500.0))
def test_a_healthy_steady_chain_stays_green(jitter, rate):
    """Steady rates with +-20% noise: no rule fires, warm-up or not."""
    r = Runner()
    n, latency_sum = 0, 0
    for t, j in enumerate(jitter):
        step = int(rate * j)
        n += step
        latency_sum += int(1000 * j) * step
        edge = {"connections": n, "failed": 0, "connections_per_s": rate * j,
                "bytes_sent": 100 * n, "bytes_sent_per_s": 100 * rate * j,
                "connect_latency_us_sum": latency_sum,
                "connect_latency_count": n, "resets": 0}
        G = graph([(c, {"metrics": {"cpu_cores": 0.2 * j, "restart_count": 0,
                                    "memory_oom_kills": 0, "health": "healthy",
                                    "memory_working_set_bytes": 50,
                                    "memory_limit_bytes": 100,
                                    "cpu_throttled_ratio": 0.01}})
                   for c in ("front", "api", "db")],
                  [("front", "api", dict(edge)), ("api", "db", dict(edge))],
                  host_metrics={"memory_available_bytes": 4 << 30,
                                "memory_total_bytes": 8 << 30, "load1": 0.5,
                                "cpus": 2, "disk_used_ratio": 0.4})
        assert r.step(G, float(t)) == []


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"memory_available_bytes": 0.5e9, "memory_total_bytes": 8e9},
         {"host_memory": "warning"}),
        ({"memory_available_bytes": 0.1e9, "memory_total_bytes": 8e9},
         {"host_memory": "critical"}),
        ({"load1": 9.0, "cpus": 2}, {"host_load": "warning"}),
        ({"disk_used_ratio": 0.95}, {"host_disk": "warning"}),
        ({"disk_used_ratio": 0.99}, {"host_disk": "critical"}),
        ({"memory_available_bytes": 4e9, "memory_total_bytes": 8e9, "load1": 1.0,
          "cpus": 4, "disk_used_ratio": 0.5}, {}),
    ],
)
def test_host_memory_load_and_disk(metrics, expected):
    found = Runner().step(graph(host_metrics=metrics), 0)
    assert {f.rule: f.severity for f in found} == expected
    assert all(f.target == HOST for f in found)


def test_each_rule_is_registered_once_with_what_the_analysis_needs_of_it():
    """One ``@rule`` per rule: the checks, the likely cause's 'own trouble'
    and the baselines judged by all come from it."""
    assert sum(len(c.rules) for c in CHECKS) == len(RULES)
    assert {c.name: sorted(c.rules) for c in CHECKS}["service_failures"] == [
        "service_down", "service_failures"]
    assert RULES["service_down"].intrinsic and not RULES["service_failures"].intrinsic
    assert {n for n, r in RULES.items() if r.intrinsic} == {
        "exited", "restart_loop", "oom", "health", "memory", "cpu_throttled",
        "cpu_spike", "service_down", "host_memory", "host_load", "host_disk",
        "calls_unserved", "service_stopped"}
    assert {n for n, r in RULES.items() if r.caller_at_fault} == {"calls_unserved"}
    assert {n: r.baseline for n, r in RULES.items() if r.baseline} == {
        "cpu_spike": "cpu_cores", "resets": "resets_per_s",
        "traffic_stopped": "active", "slow_connect": "connect_latency_us",
        "spike_connections_per_s": "connections_per_s",
        "spike_bytes_per_s": "bytes_per_s"}
    with pytest.raises(RuleError, match="'oom' is registered twice"):
        rule("oom")(lambda G, ctx: [])


def _broken(G, ctx):
    raise ZeroDivisionError("a bug in a check")


def _unregistered(G, ctx):
    return [Finding(HOST, "no_such_rule", "warning", "made up")]


@pytest.mark.parametrize(
    ("check", "logged"),
    [(Check(_broken, frozenset({"broken"})), "ZeroDivisionError"),
     (Check(_unregistered, frozenset({"other"})),
      "raised rule(s) no_such_rule it did not register")],
)
def test_a_check_that_fails_is_reported_and_the_others_still_judge(
        check, logged, caplog):
    """Skipped for the step so the analysis goes on, but named in the results
    and in an error log, not silently."""
    G = graph([("job", {"state": "exited", "exit_code": 2})])
    ctx = Context(FAST, Memory.new(FAST), 0.0)
    results = evaluate_rules(G, ctx, (*CHECKS, check))
    assert results.failed_checks == [check.name]
    assert [f.rule for f in results.findings] == ["exited"]
    errors = [r for r in caplog.records if r.name == "portolan.anomalies.rules"
              and r.levelname == "ERROR"]
    assert len(errors) == 1 and f"check {check.name} (rules" in errors[0].getMessage()
    assert logged in caplog.text


def test_config_from_settings_environment_and_overrides(settings):
    settings.PORTOLAN_ANOMALY = {"raise_after": 4, "memory_ratio": 0.8}
    settings.PORTOLAN_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    conf = load_config(environ={"PORTOLAN_ANOMALY_RAISE_AFTER": "6"})
    assert (conf.raise_after, conf.memory_ratio) == (6, 0.8)
    assert conf.webhook_url == "http://127.0.0.1:9/hook"
    assert load_config({"clear_after": 9}, environ={}).clear_after == 9


@pytest.mark.parametrize(
    ("environ", "overrides", "named"),
    [
        ({"PORTOLAN_ANOMALY_RAISE_AFTER": "soon"}, None,
         "PORTOLAN_ANOMALY_RAISE_AFTER"),
        ({"PORTOLAN_ANOMALY_NO_SUCH": "1"}, None, "no_such"),
        ({}, {"memory_ratio": 1.5}, "memory_ratio"),
        ({}, {"clear_after": 0}, "clear_after"),
        ({"PORTOLAN_WEBHOOK_URL": "ftp://x"}, None, "PORTOLAN_WEBHOOK_URL"),
    ],
)
def test_bad_settings_fail_fast_naming_the_setting(environ, overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(overrides, environ=environ, use_django=False)
