"""`make demo` in Debian's Chromium: the shipped capture on the map, with no
Docker, no capabilities (so no eBPF and nothing root may do) and its own Redis.

scripts/demo.sh runs under setpriv with an empty capability set and a Docker
socket that does not exist; the replay runs twice as fast, so payments (which
stops listening halfway through the 150 s capture) fails about 40 s in, and
the loop starts again 75 s in.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.browser.test_map import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import free_port, require, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo-browser-test-pw-7"
PAYMENTS = "demo-payments"
RED = "rgb(214,69,69)"
# One attribute of every edge into a node, as the map holds it.
EDGES_TO_PAYMENTS = """([id, name]) => window.portolanMap.cy.edges()
    .filter(e => e.target().id() === id)
    .map(e => (e.data('attrs') || {})[name] || 0)"""
# The map shows the past graph of the time chosen (map.js loadPast's status).
PAST_SHOWN = """() => { const m = window.portolanMap, at = m.view().at;
    return at !== null && m.state() === 'past'
      && document.querySelector('#statusbar .conn-text').textContent
         === `as it was at ${new Date(at * 1000).toLocaleString()}`
             + ' · live updates paused'; }"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory, frontend_bundle):
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    require(shutil.which("setpriv") is not None, "setpriv not installed")
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PORTOLAN_VAR_DIR": str(tmp / "var"),
           "DATABASE_PATH": str(tmp / "var" / "db.sqlite3"),
           "PORTOLAN_PORT": str(free_port()), "PORTOLAN_ADMIN_PASSWORD": PASSWORD,
           "DEMO_SPEED": "2", "DOCKER_HOST": f"unix://{tmp}/no-docker.sock"}
    for name in ("REDIS_URL", "CHANNEL_REDIS_URL"):
        env.pop(name, None)
    log = tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
             "bash", "scripts/demo.sh"], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        found = wait_for(lambda: re.search(
            r"the map is at (http://\S+/)\n.*login admin", log.read_text(),
            re.S) or proc.poll() is not None, timeout=120, interval=0.5)
        assert found and proc.poll() is None, log.read_text()[-3000:]
        yield found.group(1).rstrip("/"), proc, log
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # demo.sh stops what it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        print(log.read_text()[-4000:])


def test_make_demo_serves_the_map_of_the_capture(demo):
    url, proc, log = demo
    started = time.monotonic()
    from playwright.sync_api import sync_playwright

    require(os.path.exists(CHROMIUM), "Debian's chromium not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/?level=container")
        assert "/login/" in page.url
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/login/" not in u)
        page.wait_for_function(
            "() => window.portolanMap && window.portolanMap.nodeNames()"
            f".includes({PAYMENTS!r}) && window.portolanMap.nodeNames().length >= 30",
            timeout=60_000)
        names = page.evaluate("() => window.portolanMap.nodeNames()")
        assert {"demo-api-1", "demo-db-primary", "demo-dns", "demo-report-job",
                "demo-edge", "demo-app", "demo-data"} <= set(names)

        # The failing dependency turns red, and says why.
        payments = page.evaluate(
            "() => window.portolanMap.summary().nodes"
            f".find(n => n.name === {PAYMENTS!r}).id")
        status = ("window.portolanMap.summary().nodes"
                  f".find(n => n.id === {payments!r}).status")
        page.wait_for_function(f"() => {status} === 'critical'", timeout=90_000)
        failed_after = time.monotonic() - started
        colour = page.evaluate(
            f"() => window.portolanMap.cy.getElementById({payments!r})"
            ".style('background-color')")
        assert colour == RED
        page.evaluate(f"() => window.portolanMap.select({payments!r})")
        why = page.locator("#details .why")
        why.wait_for(state="visible")
        assert "stopped listening" in why.text_content(), why.text_content()

        # The replay is marked on its hosts.
        page.evaluate("() => window.portolanMap.select('host:demo-app')")
        page.wait_for_function(
            "() => document.querySelector('#details')"
            ".textContent.includes('demo.capture, recorded')")

        # The time slider moves back through the capture, 15 s a step, to
        # before payments failed: then it served its callers.
        live_failed = page.evaluate(EDGES_TO_PAYMENTS, [payments, "failed"])
        assert live_failed and max(live_failed) > 0, live_failed
        seen = []
        for ago in range(15, 181, 15):
            page.evaluate("""(ago) => { const s = document.getElementById('time');
                s.value = String(-ago); s.dispatchEvent(new Event('input'));
                s.dispatchEvent(new Event('change')); }""", ago)
            # The past graph of that time is drawn: the status bar names it.
            page.wait_for_function(PAST_SHOWN, timeout=60_000)
            label = page.locator("#time-label").text_content()
            failing = page.evaluate(EDGES_TO_PAYMENTS, [payments, "failed_per_s"])
            served = page.evaluate(EDGES_TO_PAYMENTS,
                                   [payments, "connections_per_s"])
            seen.append((label, failing, served))
            if failing and max(failing) == 0 and max(served) > 0:
                break
        else:
            raise AssertionError(f"payments never served in the past: {seen}")
        assert any(f and max(f) > 0 for _, f, _ in seen) or ago == 15, seen
        page.click("#live")
        page.wait_for_function("() => window.portolanMap.state() === 'live'")
        browser.close()
    assert errors == []
    assert failed_after < 100  # ~40 s into a replay at twice the speed
    assert proc.poll() is None, log.read_text()[-3000:]
