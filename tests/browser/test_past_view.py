"""The time slider shows the map as it was (issue 23), on real containers.

A collector traces two busybox clients of one server through eBPF into the
browser tests' Redis: client1 makes 250 connections and exits; 14 quiet
seconds; client2 makes 150. Live, both edges are on the map. The slider,
moved to a moment inside the pause, shows client1 -> server with its 250
(its panel says so) and not client2's edge; the server's panel there marks
that moment on its series.
"""

import math
import os
import sys
import time

import pytest

from tests.browser import test_map
from tests.browser.test_map import log_in, wait_for_live, wait_for_map
from tests.conftest import wait_collector_in_ebpf_mode
from tests.processes import LoggedProcess

pytestmark = [pytest.mark.browser, pytest.mark.ebpf, pytest.mark.docker]

# The map's fixtures: Chromium, Daphne with the graph builder, a logged-out page.
browser, server, page = test_map.browser, test_map.server, test_map.page

HOST = "past-browser"
SLIDER_STEP = 15  # seconds between the slider's positions (templates/maps/map.html)

EDGE_JS = """([src, dst]) => {
  const e = window.portolanMap.cy.edges().filter(
    (x) => x.source().data('label') === src && x.target().data('label') === dst);
  return e.empty() ? null : { id: e[0].id(), ...e[0].data('attrs') };
}"""


def edge(page, src, dst):
    return page.evaluate(EDGE_JS, [src, dst])


def test_time_slider_into_the_pause_shows_the_edge_and_its_totals(
    page, redis_server, redis_client, ebpf_ready, containers, repo_root, tmp_path
):
    env = {**os.environ, "REDIS_URL": redis_server.url, "PORTOLAN_HOST_ID": HOST,
           "PORTOLAN_VAR_DIR": str(tmp_path), "PORTOLAN_INTERVAL": "0.5"}
    srv = containers.run("httpd -f -p 8080 -h /var/www")
    ip = containers.ip(srv)
    collector = LoggedProcess(
        "test_past_view-browser-collector",
        [sys.executable, "-m", "collector", "--duration", "240"],
        cwd=repo_root, env=env).start()
    try:
        wait_collector_in_ebpf_mode(redis_client, HOST, collector)
        client1 = containers.run(
            f"for i in $(seq 250); do wget -q -O /dev/null http://{ip}:8080/ "
            "|| exit 1; done")
        assert client1.wait(timeout=120)["StatusCode"] == 0
        exited = time.time()
        time.sleep(14)  # the pause
        client2 = containers.run(
            f"for i in $(seq 150); do wget -q -O /dev/null http://{ip}:8080/ "
            "|| exit 1; done")
        assert client2.wait(timeout=120)["StatusCode"] == 0

        log_in(page, "/?level=container")
        wait_for_live(page, "container")
        wait_for_map(page, f"""(() => {{
            const e = window.portolanMap.cy.edges().filter(
              (x) => x.target().data('label') === {srv.name!r});
            return e.length >= 2; }})()""", timeout_ms=20_000)
        assert edge(page, client1.name, srv.name)["connections"] == 250
        assert edge(page, client2.name, srv.name)["connections"] == 150

        # Into the pause: once its client1 counts are in a history step (the
        # collector reports within a second, a snapshot follows within 5 s)
        # and before client2 started. The slider moves in 15 s steps back
        # from now: wait until one of them lands on that moment.
        moment = exited + 10
        back = SLIDER_STEP * math.ceil((time.time() + 0.5 - moment) / SLIDER_STEP)
        time.sleep(max(0.0, moment + back - time.time()))
        page.locator("#time").fill(str(-back))
        # The past graph is drawn once client2's edge (live) has gone, and
        # client1's stays.
        wait_for_map(page, f"""m.state() === 'past' && (() => {{
            const from = (name) => window.portolanMap.cy.edges().filter(
              (x) => x.source().data('label') === name).length;
            return from({client1.name!r}) === 1 && from({client2.name!r}) === 0;
            }})()""")
        at = page.evaluate("() => window.portolanMap.view().at")
        assert exited + 6 <= at <= exited + 14, (at - exited)
        past = edge(page, client1.name, srv.name)
        assert past and past["connections"] == 250, past
        assert edge(page, client2.name, srv.name) is None

        # The edge's panel shows its totals as they stood then.
        page.evaluate(
            "(id) => { window.portolanMap.cy.getElementById(id).emit('tap'); }",
            past["id"])
        page.locator("#details").wait_for(state="visible")
        page.wait_for_function(
            """() => [...document.querySelectorAll('#details dt')].some(
                 (dt) => dt.textContent === 'connections (total)'
                   && dt.nextElementSibling.textContent === '250')""")

        # The server's panel: its series up to that moment, the moment marked.
        node = page.evaluate(
            "(name) => window.portolanMap.cy.nodes().filter("
            "(n) => n.data('label') === name)[0].id()", srv.name)
        page.evaluate("(id) => window.portolanMap.select(id)", node)
        page.wait_for_function(
            "() => document.querySelector('#details').dataset.api === 'ok'")
        page.wait_for_function(
            "(at) => document.querySelector('#details .sparklines')"
            "?.dataset.markedAt === String(at)", arg=at)
        assert "15 minutes up to" in page.locator(
            "#details .series h3").text_content()
        collector.assert_alive("the collector died during the test")
    finally:
        collector.stop()
