"""The likely cause on the map, in Debian's Chromium (issue 20).

front -> api -> db, reported through the collector's real reporter (see
test_map.FakeHost), judged by a real `manage.py analyze`, built by the real
graph builder and served by Daphne: once db stops, db is ringed as the likely
cause and heads the "where to start" list, and the panels of api and front say
"because of db" with a link that opens db's panel.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

from tests.browser import test_map
from tests.browser.test_map import (
    ROOT,
    FakeHost,
    log_in,
    shot,
    wait_for_live,
    wait_for_map,
)
from tests.conftest import wait_for
from tests.processes import LoggedProcess
from webapp.anomalies.merge import read_verdict

pytestmark = pytest.mark.browser

# The map's fixtures: Chromium, Daphne with the graph builder, a logged-out page.
browser, server, page = test_map.browser, test_map.server, test_map.page

IPS = {"c-front": "10.89.1.2", "c-api": "10.89.1.3", "c-db": "10.89.1.4"}


@pytest.fixture
def analyzer(server, redis_server, tmp_path):
    """`manage.py analyze` on the test Redis, as `make run` starts it."""
    env = dict(os.environ, REDIS_URL=redis_server.url,
               PORTOLAN_VAR_DIR=str(tmp_path / "var"),
               PORTOLAN_ANOMALY_HOST_LOAD_PER_CPU="1000")
    with LoggedProcess("test_blame-analyzer", [sys.executable, "manage.py",
                                               "analyze"], cwd=ROOT, env=env) as proc:
        yield proc
        # A dead analyzer reads as "no verdict": it must have run throughout.
        proc.assert_alive("the analyzer died during the test")


class Shop:
    """front -> api -> db, reported twice a second until ``stop``."""

    def __init__(self, url: str):
        self.host = FakeHost(url, "blame-br")
        for cid, ip in IPS.items():
            self.host.add(cid, f"pt-{cid[2:]}", ip)
        self.db_down = False
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def node(self, cid: str) -> str:
        return self.host.node(cid)

    def set_db_down(self) -> None:
        with self.lock:
            self.db_down = True
            self.host.set_state("c-db", "exited", exit_code=137)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                if self.db_down:
                    # db is gone; api, gated on it, stops answering too.
                    self.host.connect("c-api", IPS["c-db"], 5432, failed=3,
                                      failed_refused=3)
                    self.host.connect("c-front", IPS["c-api"], 8080, failed=3,
                                      failed_refused=3)
                else:
                    self.host.connect("c-api", IPS["c-db"], 5432, connections=3)
                    self.host.connect("c-front", IPS["c-api"], 8080, connections=3)
                self.host.report(interval=0.5)
            self.stop.wait(0.5)


def panel_of(page, node_id: str) -> None:
    page.evaluate(f"() => window.portolanMap.select({node_id!r})")
    page.wait_for_function(
        f"() => document.querySelector('#details').dataset.id === {node_id!r}")


def test_the_root_of_a_cascade_is_marked_and_every_panel_points_at_it(
        page, analyzer, redis_server, redis_client):
    shop = Shop(redis_server.url)
    shop.thread.start()
    try:
        log_in(page, "/?level=container")
        wait_for_live(page, "container")
        wait_for_map(page, "m.nodeNames().includes('pt-db')")
        db, api, front = (shop.node(c) for c in ("c-db", "c-api", "c-front"))
        assert wait_for(lambda: read_verdict(redis_client).active,
                        timeout=60), analyzer.describe()
        # Some healthy traffic first: judged ok, all three, on the map.
        healthy = " && ".join(f"m.cy.getElementById({n!r}).data('status') === 'ok'"
                              for n in (db, api, front))
        wait_for_map(page, healthy)
        shop.set_db_down()

        # db ringed as the likely cause (rank 1), on the map.
        likely = (f"m.cy.getElementById({db!r}).data('likely') === 1 && "
                  f"m.cy.getElementById({api!r}).data('attrs').because_of")
        wait_for_map(page, likely, timeout_ms=60_000)
        ring = page.evaluate(
            f"() => window.portolanMap.cy.getElementById({db!r})"
            ".style('border-style')")
        assert ring == "double"
        # api and front follow as their failures are judged (a step later).
        for node in (api, front):
            wait_for_map(page, f"['warning', 'critical'].includes("
                               f"m.cy.getElementById({node!r}).data('status'))")

        # api's and front's panels: because of db, and where to start.
        for node in (api, front):
            panel_of(page, node)
            page.wait_for_selector("#details .because .node-link")
            because = page.locator("#details .because-of").text_content()
            assert because.startswith("because of pt-db: "), because
            assert "exited" in because or "gone" in because, because
            first = page.locator("#details .where-to-start li").first
            assert first.text_content().startswith("pt-db"), first.text_content()
        shot(page, "blame-front-panel.png")

        # The link selects the root.
        page.click("#details .because .node-link")
        page.wait_for_function(
            f"() => document.querySelector('#details').dataset.id === {db!r}")
        page.wait_for_url(lambda url: f"sel={db}" in url.replace("%3A", ":"))
        why = page.locator("#details .why").text_content()
        assert "exited" in why, why
        shot(page, "blame-db-panel.png")
    finally:
        shop.stop.set()
        shop.thread.join(timeout=5)
