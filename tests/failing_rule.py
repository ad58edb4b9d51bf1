"""``manage.py analyze`` with one more rule, whose check always raises: a real
analyzer run (settings, Redis, lock, publishing) in which a rule fails.

    python -m tests.failing_rule [analyze's options]

``run_failing_analyzer`` runs it for a few steps beside a host whose container
exited (which the other rules must still judge); used by the tests that show
a failing rule to users (/healthz, the map's status bar).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, HostRecord, Keys, container_node_id
from tests.conftest import wait_for
from tests.processes import LoggedProcess

ROOT = Path(__file__).resolve().parent.parent
CHECK = "always_fails"
RULE = "always_fails"
# Two lines and markup: shown as one line, and as text, never as HTML.
ERROR = "broken on purpose <img src=x onerror=alert(1)>\nsecond line"
ERROR_LINE = f"RuntimeError: {' '.join(ERROR.split())}"
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


def run_failing_analyzer(url: str, channel_url: str, var_dir,
                         name: str = "failing_rule") -> LoggedProcess:
    """This analyzer for a few steps over ``url``, the host reported meanwhile
    (a workload's pace); the finished process, checked to have exited 0. (The
    settings want one Redis for Channels beside a cluster: ``channel_url``.)"""
    analyzer = LoggedProcess(
        f"{name}-analyzer",
        [sys.executable, "-m", "tests.failing_rule", "--duration", "3",
         "--interval", "0.5"],
        cwd=ROOT, env={**os.environ, "REDIS_URL": url,
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


def failures_logged(analyzer: LoggedProcess) -> list[str]:
    """The analyzer's log lines that say this rule's check failed."""
    return [line for line in analyzer.output().splitlines()
            if f"check {CHECK} (rules {RULE}) failed" in line]


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from webapp.anomalies.rules import rule

    @rule(RULE)
    def always_fails(G, ctx):
        raise RuntimeError(ERROR)

    call_command("analyze", *argv)


if __name__ == "__main__":
    main(sys.argv[1:])
