"""A rule that raises, in a real analyzer run (``manage.py analyze`` with one
rule whose check always raises: tests/failing_rule.py) against a real Redis and
a Redis Cluster: the analyzer goes on judging with the other rules, and the
failure is counted where users look (/healthz, the map's API), not only logged.
"""

from datetime import datetime

import pytest

from tests.failing_rule import (
    CHECK,
    ERROR_LINE,
    JOB,
    RULE,
    failures_logged,
    run_failing_analyzer,
)
from tests.integration.test_cluster_web import web_on_backend  # noqa: F401
from webapp.anomalies.merge import read_analysis

pytestmark = pytest.mark.django_db


def test_a_failing_rule_is_counted_on_healthz_and_the_analysis_goes_on(
        web_on_backend, redis_server, client, django_user_model, tmp_path):  # noqa: F811
    url, redis = web_on_backend
    started = datetime.now().astimezone()
    analyzer = run_failing_analyzer(url, redis_server.url, tmp_path / "var",
                                    "test_rule_failures")
    logged = failures_logged(analyzer)
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
