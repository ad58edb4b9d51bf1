"""DockerWatcher across a dockerd restart (SIGTERM, then a fresh ``dockerd``).

This stops the engine every other test on the host is using, so it is one
test that restarts dockerd exactly once, and always leaves a dockerd running
(started detached, its log in /tmp) even when an assertion fails.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from collector.docker_events import DockerWatcher
from tests.conftest import ensure_dockerd, process_running, require, wait_for

pytestmark = pytest.mark.docker

PIDFILE = "/var/run/docker.pid"


def dockerd_pid() -> int | None:
    try:
        pid = int(open(PIDFILE).read().strip())  # noqa: SIM115
        comm = open(f"/proc/{pid}/comm").read().strip()  # noqa: SIM115
    except (OSError, ValueError):
        return None
    return pid if comm == "dockerd" else None


def test_watcher_recovers_from_dockerd_restart(containers):
    pid = dockerd_pid()
    require(pid is not None and os.geteuid() == 0, "no dockerd this test may restart")
    # Containers whose pid 1 dies on SIGTERM at once, so dockerd stops them fast.
    kept = containers.run(
        "sleep 3600", restart_policy={"Name": "always"}, stop_signal="SIGKILL"
    )
    plain = containers.run("sleep 3600", stop_signal="SIGKILL")
    watcher = DockerWatcher(backoff_initial=0.1, backoff_max=1.0).start()
    try:
        assert watcher.wait_synced(30), watcher.last_error
        assert {kept.id, plain.id} <= set(watcher.snapshot())
        assert watcher.syncs == 1

        os.kill(pid, signal.SIGTERM)
        gone = wait_for(lambda: not process_running(pid), timeout=60)
        assert gone, "dockerd did not exit on SIGTERM"
        assert wait_for(lambda: not watcher.connected, timeout=10)
        down_at = time.monotonic()
        # dockerd stopped them on its way out: not shown running meanwhile.
        while_down = {
            cid: (watcher.snapshot()[cid]["state"], watcher.snapshot()[cid]["pid"])
            for cid in (kept.id, plain.id)
        }
    finally:
        # Whatever happened, leave an engine running for everyone else.
        client = ensure_dockerd()
    assert client is not None, "dockerd did not come back: /tmp/portolan-dockerd.log"
    assert while_down == {kept.id: ("exited", 0), plain.id: ("exited", 0)}
    try:
        assert wait_for(lambda: watcher.connected and watcher.syncs >= 2, timeout=30), (
            f"watcher did not reconnect: {watcher.last_error}"
        )
        recovered_in = time.monotonic() - down_at
        snap = watcher.snapshot()
        # Both survive the restart in the listing: one restarted, one stopped.
        assert {kept.id, plain.id} <= set(snap), recovered_in
        assert wait_for(
            lambda: watcher.snapshot()[kept.id]["state"] == "running", timeout=30
        )
        assert watcher.snapshot()[plain.id]["state"] == "exited"
        # And the stream is live again: a new container shows up.
        fresh = containers.run("sleep 3600", stop_signal="SIGKILL")
        assert wait_for(lambda: fresh.id in watcher.snapshot(), timeout=2)
    finally:
        watcher.close()
