"""`make run`, the README's first command, end to end: it starts Redis, a
collector, the analyzer and the map; the login works and the map page is
served; Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading

import pytest
import requests

from tests.conftest import free_port, wait_for

pytestmark = [pytest.mark.ebpf]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_serves_the_map_and_stops_on_ctrl_c(tmp_path, repo_root):
    redis_port, web_port = free_port(), free_port()
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               PORTOLAN_PORT=str(web_port), PORTOLAN_VAR_DIR=str(tmp_path),
               PORTOLAN_ADMIN_PASSWORD="make-run-test-pw", PORTOLAN_HOST_ID="run-host")
    run = subprocess.Popen(["make", "run"], cwd=repo_root, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{web_port}"
    try:
        started = f"the map is at {base}/"
        assert wait_for(lambda: any(started in line for line in output),
                        timeout=180, interval=0.5), "".join(output)
        assert _listening(redis_port), "it did not start its own Redis"

        def collector_reports():
            # Its own Redis: the one collector counted is the one it started.
            try:
                body = requests.get(f"{base}/healthz", timeout=2).json()
            except (requests.RequestException, ValueError):
                return False
            return body["collectors"] == 1

        assert wait_for(collector_reports, timeout=60, interval=0.5), "".join(output)
        session = requests.Session()
        assert session.get(f"{base}/", timeout=5).url.startswith(f"{base}/login/")
        login = session.get(f"{base}/login/", timeout=5)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        page = session.post(f"{base}/login/", timeout=5, data={
            "username": "admin", "password": "make-run-test-pw",
            "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{base}/login/"})
        assert page.status_code == 200 and page.url == f"{base}/", page.url
        assert "portolan" in page.text.lower()
        health = session.get(f"{base}/healthz", timeout=5).json()
        assert [c["host"] for c in health["collectors"]] == ["run-host"]
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        run.wait(timeout=60)
        reader.join(timeout=5)
    assert "portolan: stopped" in "".join(output)
    assert wait_for(lambda: not _listening(web_port) and not _listening(redis_port),
                    timeout=10), "something it started is still running"
