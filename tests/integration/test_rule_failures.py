"""A rule that raises, in a real analyzer run (``manage.py analyze`` with one
rule whose check always raises: tests/failing_rule.py) against a real Redis and
a Redis Cluster: the analyzer goes on judging with the other rules, and the
failure is counted where users look (/healthz, the map's API), not only logged.
"""

import os
import sys
from collections import Counter
from datetime import datetime

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, HostRecord, Keys, container_node_id
from tests.conftest import wait_for
from tests.failing_rule import CHECK, ERROR_LINE, RULE
from tests.integration.test_cluster_web import web_on_backend  # noqa: F401
from tests.processes import LoggedProcess
from webapp.anomalies.merge import read_analysis

pytestmark = pytest.mark.django_db

HOST = "rf-h1"
JOB = container_node_id(HOST, "job")


def report_exited_job(url: str) -> None:
    """One host whose container ``job`` exited 1: the ``exited`` rule's finding."""
    reporter = RedisReporter(reporter_client(url), Keys("portolan"))
    try:
        assert reporter.report(HostReport(
            host=HostRecord(id=HOST, hostname=HOST),
            containers=[ContainerRecord(id="job", name="job", state="exited",
                                        exit_code=1, ips=["10.78.0.2"])],
            addrs={"10.78.0.2": JOB}, flows=Counter()))
    finally:
        reporter.client.close()


def run_failing_analyzer(url: str, channel_url: str, repo_root,
                         var_dir) -> LoggedProcess:
    """``manage.py analyze`` with the failing rule for a few steps, the host
    reported meanwhile (a workload's pace); the finished process. (The
    settings want one Redis for Channels beside a cluster: ``channel_url``.)"""
    analyzer = LoggedProcess(
        "test_rule_failures-analyzer",
        [sys.executable, "-m", "tests.failing_rule", "--duration", "3",
         "--interval", "0.5"],
        cwd=repo_root, env={**os.environ, "REDIS_URL": url,
                            "CHANNEL_REDIS_URL": channel_url,
                            "PORTOLAN_VAR_DIR": str(var_dir)})
    report_exited_job(url)
    analyzer.start()
    try:
        wait_for(lambda: report_exited_job(url) or not analyzer.alive,
                 timeout=120, interval=0.5)
        assert analyzer.wait(timeout=30) == 0, analyzer.describe()
    finally:
        analyzer.stop()
    return analyzer


def test_a_failing_rule_is_counted_on_healthz_and_the_analysis_goes_on(
        web_on_backend, redis_server, client, django_user_model, repo_root,  # noqa: F811
        tmp_path):
    url, redis = web_on_backend
    started = datetime.now().astimezone()
    analyzer = run_failing_analyzer(url, redis_server.url, repo_root,
                                    tmp_path / "var")
    logged = [line for line in analyzer.output().splitlines()
              if f"check {CHECK} (rules {RULE}) failed" in line]
    assert logged, f"the check never raised: {analyzer.describe()}"

    # The analysis went on without it: the exited job is judged critical.
    statuses, _ = read_analysis(redis, "portolan")
    assert statuses.get(JOB, {}).get("status") == "critical", (
        statuses, analyzer.describe())

    # Anyone: which rule, how often, the error's type and when; no text.
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 200
    [failure] = anonymous.json()["rule_failures"]
    assert (failure["check"], failure["rules"]) == (CHECK, [RULE])
    assert failure["count"] == len(logged), (failure, logged)
    assert failure["error_type"] == "RuntimeError" and "error" not in failure
    when = datetime.fromisoformat(failure["last_failed_at"])
    assert started.replace(microsecond=0) <= when <= datetime.now().astimezone()
    assert failure["failing"] is True and failure["seconds_ago"] >= 0

    # A logged-in user also reads the error's one line, there and in the API.
    assert client.get("/api/rule-failures/").status_code == 401
    client.force_login(django_user_model.objects.create_user("ops", password="x"))
    [failure] = client.get("/healthz").json()["rule_failures"]
    assert failure["error"] == ERROR_LINE and "\n" not in failure["error"]
    api = client.get("/api/rule-failures/")
    assert api.status_code == 200
    assert [(f["check"], f["count"], f["error"]) for f in api.json()["rule_failures"]
            ] == [(CHECK, len(logged), ERROR_LINE)]


def test_healthz_lists_no_failure_while_every_rule_judges(
        web_on_backend, client):  # noqa: F811
    """The list is empty, not missing, when no rule failed (a monitor can
    tell the two apart)."""
    body = client.get("/healthz").json()
    assert body["rule_failures"] == []
