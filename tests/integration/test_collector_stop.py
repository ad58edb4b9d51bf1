"""Stopping the collector as Docker and Kubernetes do (SIGTERM), or with Ctrl-C
(SIGINT), loses nothing.

The collector runs with a 60 s interval, so after its first report nothing more
is written until it is stopped; connections made in that window reach Redis
only through the last step it takes on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from collector.schema import Keys
from tests.conftest import free_port, wait_collector_in_ebpf_mode, write_programs
from tests.integration.test_host_map import (
    SCRIPTS,
    HostPrograms,
    edge,
    graph,
    unique_name,
)
from tests.processes import LoggedProcess

pytestmark = [pytest.mark.ebpf]

HOST = "stop-host"
N = 12


@pytest.fixture
def programs(tmp_path):
    root = tmp_path / "programs"
    root.mkdir()
    progs = HostPrograms(write_programs(root, SCRIPTS))
    yield progs
    progs.stop()


def ignore_sigint() -> None:
    """What a shell does to a job it starts in the background: SIGINT ignored,
    which Python keeps unless the program sets a handler itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop_signal,preexec", [
    (signal.SIGTERM, None),
    (signal.SIGINT, ignore_sigint),
], ids=["sigterm", "sigint-ignored-on-entry"])
def test_a_stop_signal_reports_the_last_interval_and_exits_cleanly(
        redis_server, redis_client, ebpf_ready, programs, tmp_path, repo_root,
        stop_signal, preexec):
    server, port = unique_name("ptstp"), free_port()
    programs.serve(server, "server.py", "127.0.0.1", port, 10, 30)
    collector = LoggedProcess(
        "test_collector_stop-collector",
        [sys.executable, "-m", "collector", "--interval", "60"], cwd=repo_root,
        env={**os.environ, "REDIS_URL": redis_server.url,
             "PORTOLAN_HOST_ID": HOST, "PORTOLAN_VAR_DIR": str(tmp_path / "var")},
        preexec_fn=preexec,
    ).start()
    try:
        wait_collector_in_ebpf_mode(redis_client, HOST, collector)
        first = redis_client.zscore(Keys().collectors, HOST)
        client = unique_name("ptstc")
        programs.run(client, "client.py", "127.0.0.1", port, N, 10, 30, 1)
        # Still only the first report: the next is 60 s away.
        assert redis_client.zscore(Keys().collectors, HOST) == first
        assert edge(graph(redis_client, "container"), client, server) is None
        collector.proc.send_signal(stop_signal)
        assert collector.wait(timeout=60) == 0, collector.describe()
    finally:
        collector.stop()
    assert redis_client.zscore(Keys().collectors, HOST) > first
    found = edge(graph(redis_client, "container"), client, server)
    assert found is not None and found["connections"] == N, (
        found, collector.describe())
    assert found["failed"] == 0
