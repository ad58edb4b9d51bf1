"""A fleet that goes quiet, on the map in Debian's Chromium.

Every host of a fleet drawn by level of detail (more than 1,500 nodes at the
container level: frontend/src/fleet.js) stops reporting at once, as when a
network partition or a Redis outage cuts the collectors off. The map must
say so (each host shown not reporting within the collector TTL, then gone at
the node TTL) while the page stays bounded and answers, with the one socket it
had (no reconnect or resnapshot loop); once the hosts report again, the fleet
comes back. Real Redis, the collectors' real RedisReporter, the real graph
builder and relay.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.browser.test_map import (  # noqa: F401 - browser: a fixture
    browser,
    log_in,
    map_served,
    wait_for_map,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from synthetic_world import host_labels, make_world, traffic  # noqa: E402

pytestmark = pytest.mark.browser

# Enough for the fleet drawing (1,500 nodes at the container level), small
# enough to report every second from one thread.
HOSTS, CONTAINERS, EDGES = 40, 1_600, 6_000
COLLECTOR_TTL = 5  # silent this long: shown as not reporting
NODE_TTL = 20  # silent this long: gone from the map
# Generous: the map holds ~8,000 records in ~50-100 MB; the crash this guards
# against took the heap to 3 GB.
HEAP_BOUND_MB = 600
# The page answers an evaluate within this even on a loaded machine.
ANSWER_S = 10.0

HEAP_JS = "() => Math.round(performance.memory.usedJSHeapSize / 1e6)"


class Fleet(threading.Thread):
    """The world's hosts reporting every second through real RedisReporters
    (a few flows with traffic each time) until ``quiet`` is set, again once
    it is cleared."""

    def __init__(self, url: str, world):
        super().__init__(daemon=True)
        from collector.reporter import RedisReporter, redis_client
        from collector.schema import Keys

        self.world = world
        self.reporters = {h: RedisReporter(redis_client(url), Keys("portolan"),
                                           node_ttl=NODE_TTL)
                          for h in world.containers}
        self.quiet = threading.Event()
        self.stopped = threading.Event()
        self.rounds = 0

    def run(self):
        from collector.reporter import HostReport
        from collector.schema import HostRecord, container_node_id

        rng = random.Random(3)
        while not self.stopped.is_set():
            if not self.quiet.is_set():
                for host, recs in self.world.containers.items():
                    self.reporters[host].report(HostReport(
                        host=HostRecord(id=host, hostname=host, mode="ebpf",
                                        labels=host_labels(host)),
                        containers=recs,
                        addrs={r.ips[0]: container_node_id(host, r.id) for r in recs},
                        flows=traffic(self.world.flows[host], 0.05, rng)))
                self.rounds += 1
            self.stopped.wait(1.0)

    def close(self):
        self.stopped.set()
        self.join(10)
        for reporter in self.reporters.values():
            reporter.client.close()


@pytest.fixture(scope="module")
def world():
    return make_world(HOSTS, CONTAINERS, EDGES)


@pytest.fixture(scope="module")
def quiet_fleet(redis_server, world, tmp_path_factory):
    """The fleet reporting, Daphne and the builder with short TTLs."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    fleet = Fleet(redis_server.url, world)
    fleet.start()
    try:
        with map_served(redis_server.url, tmp_path_factory.mktemp("portolan-quiet"),
                        "test_map_fleet_quiet", PORTOLAN_NODE_TTL=str(NODE_TTL),
                        PORTOLAN_COLLECTOR_TTL=str(COLLECTOR_TTL)) as url:
            yield url, fleet
    finally:
        fleet.close()


def answered(page, js: str, arg=None):
    """``js``'s value and how long the page took to give it (its main thread
    is busy meanwhile: a loop there answers late or never)."""
    started = time.monotonic()
    value = page.evaluate(js, arg)
    return value, time.monotonic() - started


def held_hosts(page) -> dict:
    """The hosts the page holds: how many, and how many say not reporting."""
    return page.evaluate(
        """() => { const m = window.portolanMap;
             const ids = m.cy.nodes('.tile').map((n) => n.id());
             let held = 0, silent = 0;
             for (const id of ids) {
               const node = m.heldNode(id);
               if (!node || node.type !== 'host') continue;
               held += 1;
               if (node.reporting === false) silent += 1;
             }
             const tiles = m.cy.nodes('.tile').map((n) => n.data('status'));
             return { held, silent, tiles, drawing: m.drawing() }; }""")


def test_a_fleet_that_stops_reporting_is_shown_so_and_the_page_stays_bounded(
        browser, quiet_fleet):  # noqa: F811 - the fixture
    url, fleet = quiet_fleet
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    sockets: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.base_url = url
    try:
        log_in(page, "/?level=container")
        wait_for_map(page, f"m.drawing().fleet && m.drawing().nodes >= "
                           f"{HOSTS + CONTAINERS} && m.state() === 'live'",
                     timeout_ms=120_000)
        page.keyboard.press("f")
        wait_for_map(page, "m.drawing().detail === 'host'")
        fit = page.evaluate("() => { const cy = window.portolanMap.cy;"
                            " return { zoom: cy.zoom(), pan: cy.pan() }; }")
        before = held_hosts(page)
        assert before["held"] == HOSTS and before["silent"] == 0, before
        assert set(before["tiles"]) != {"unknown"}, before["tiles"]
        baseline = page.evaluate(HEAP_JS)
        socket_count = len(sockets)

        fleet.quiet.set()  # every host stops reporting at once
        quiet_at = time.monotonic()
        heaps, waits = [baseline], []
        stale_after = gone_after = None
        while time.monotonic() - quiet_at < NODE_TTL + 60:
            # What a user does meanwhile: pan about and go back to the fit.
            page.mouse.move(640, 400)
            page.mouse.down()
            page.mouse.move(500, 330, steps=4)
            page.mouse.up()
            _, took = answered(page, "(v) => { window.portolanMap.cy.viewport(v); }",
                               fit)
            waits.append(took)
            heap, took = answered(page, HEAP_JS)
            heaps.append(heap)
            waits.append(took)
            assert heap < HEAP_BOUND_MB, (heaps, waits)
            hosts = held_hosts(page)
            if stale_after is None and hosts["held"] == HOSTS and \
                    hosts["silent"] == HOSTS and set(hosts["tiles"]) == {"unknown"}:
                stale_after = time.monotonic() - quiet_at
            if hosts["drawing"]["nodes"] == 0 and hosts["drawing"]["drawnNodes"] == 0:
                gone_after = time.monotonic() - quiet_at
                break
            page.wait_for_timeout(500)
        assert stale_after is not None, ("never shown not reporting", hosts)
        assert gone_after is not None, ("never gone", hosts)
        # Not reporting from about the collector TTL (the builder's round and
        # the socket on top), gone after the node TTL, not before.
        assert stale_after < NODE_TTL, stale_after
        assert gone_after >= NODE_TTL - 2, gone_after
        assert max(waits) < ANSWER_S, waits
        assert page.evaluate("() => window.portolanMap.state()") == "live"
        assert len(sockets) == socket_count, sockets  # no reconnect loop

        fleet.quiet.clear()  # back: the fleet is drawn again, by tiles
        wait_for_map(page, f"m.drawing().fleet && m.drawing().nodes >= "
                           f"{HOSTS + CONTAINERS} && m.drawing().drawnNodes > 0"
                           " && !m.drawing().awaitingLinks",
                     timeout_ms=60_000)
        deadline = time.monotonic() + 60
        while (hosts := held_hosts(page))["held"] < HOSTS or hosts["silent"]:
            assert time.monotonic() < deadline, ("the fleet did not come back", hosts)
            page.wait_for_timeout(500)
        assert max(heaps) < HEAP_BOUND_MB, heaps
        assert errors == [], errors
    finally:
        context.close()
