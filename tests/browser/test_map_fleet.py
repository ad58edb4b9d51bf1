"""A fleet on the map in Debian's Chromium: 500 hosts, 10,000 containers.

The map holds the whole graph and draws only what the viewport shows at its
zoom (frontend/src/fleet.js): host and group tiles carrying their containers'
status when zoomed out, the containers in view when zoomed in. Panning and
searching never ask the server. The world (bench/synthetic_world.py, through
the collector's real RedisReporter) is written before the graph builder
starts, so the module waits for one build, not one per host.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.browser.test_map import (  # noqa: F401 - browser: a fixture
    browser,
    log_in,
    map_served,
    wait_for_figure,
    wait_for_map,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from synthetic_world import host_labels, make_world, write_world  # noqa: E402

pytestmark = pytest.mark.browser

HOSTS, CONTAINERS, EDGES = 500, 10_000, 50_000
NODE_TTL = 3600  # the module outlives a collector's usual 30 s
STATUS_ORDER = ["unknown", "stopped", "ok", "warning", "critical"]  # worst last


NEEDLE = ("node493", 3, "pt-needle-493")  # host, index, a name no other has


@pytest.fixture(scope="module")
def world():
    world = make_world(HOSTS, CONTAINERS, EDGES)
    host, index, name = NEEDLE
    world.containers[host][index].name = name
    return world


@pytest.fixture(scope="module")
def fleet_server(redis_server, world, tmp_path_factory):
    """Daphne and the graph builder over a Redis holding the whole world."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    write_world(world, redis_server.url, node_ttl=NODE_TTL)
    with map_served(redis_server.url, tmp_path_factory.mktemp("portolan-fleet"),
                    "test_map_fleet", PORTOLAN_NODE_TTL=str(NODE_TTL)) as url:
        yield url


# The status bar's states as they come, each with what the map drew then
# (test_the_tiles_are_drawn_before_the_links_come).
STATES_JS = """
window.__states = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("statusbar");
  if (!bar) return; // the login page
  new MutationObserver(() => {
    const m = window.portolanMap;
    window.__states.push({
      state: bar.dataset.state,
      drawing: m ? m.drawing() : null,
      tiles: m ? m.cy.nodes(".tile").map((n) => n.data("label")) : [],
    });
  }).observe(bar, { attributes: true, attributeFilter: ["data-state"] });
});
"""


@pytest.fixture(scope="module")
def fleet_page(browser, fleet_server):  # noqa: F811 - the fixture
    """One logged-in page on the fleet's container level, shared by the tests
    (loading 10,000 containers once)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(STATES_JS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.base_url = fleet_server
    log_in(page, "/?level=container")
    # The builder's first build of the whole fleet comes before the map.
    wait_for_map(page, f"m.drawing().nodes >= {HOSTS + CONTAINERS}"
                       " && m.state() === 'live'", timeout_ms=240_000)
    yield page
    context.close()
    assert page.errors == [], page.errors


def drawing(page) -> dict:
    return page.evaluate("() => window.portolanMap.drawing()")


def drawn_nodes(page) -> list[dict]:
    return page.evaluate(
        """() => window.portolanMap.cy.nodes().map((n) => ({
             id: n.id(), kind: n.data('kind'), status: n.data('status'),
             label: n.data('label'), tile: n.hasClass('tile') }))""")


def set_view(page, zoom: float, x: float | None = None, y: float | None = None):
    """Zoom (around the model point x, y, else the middle) and wait a frame."""
    page.evaluate(
        """([zoom, x, y]) => { const cy = window.portolanMap.cy;
             if (x === null) { cy.zoom({ level: zoom, renderedPosition:
               { x: cy.width() / 2, y: cy.height() / 2 } }); return; }
             cy.viewport({ zoom, pan: { x: cy.width() / 2 - x * zoom,
                                        y: cy.height() / 2 - y * zoom } }); }""",
        [zoom, x, y],
    )
    page.wait_for_timeout(200)


def test_fleet_loads_and_draws_host_tiles_with_status(fleet_page, world):
    page = fleet_page
    d = drawing(page)
    assert d["fleet"] and d["nodes"] >= HOSTS + CONTAINERS
    assert d["edges"] > 0.9 * EDGES
    # Fitted, the whole fleet is host tiles (or groups): few elements drawn.
    page.keyboard.press("f")
    page.wait_for_timeout(300)
    d = drawing(page)
    assert d["detail"] in ("host", "group"), d
    assert d["drawnNodes"] <= HOSTS + 50 and d["drawnEdges"] <= 1000, d
    # A host tile carries the worst status of its containers and their count.
    failing = next(
        (host, rec) for host, recs in world.containers.items() for rec in recs
        if rec.state == "exited"
    )
    host, rec = failing
    held = page.evaluate(
        f"() => window.portolanMap.heldNode('container:{host}:{rec.id}')")
    assert held is not None, rec
    position = page.evaluate(f"() => window.portolanMap.heldPosition('host:{host}')")
    set_view(page, 0.1, position["x"], position["y"])
    tiles = {n["id"]: n for n in drawn_nodes(page) if n["tile"]}
    tile = tiles[f"host:{host}"]
    assert f"{len(world.containers[host])} containers" in tile["label"]
    # The tile's status is the worst of its host's and containers' (the
    # server's order, webapp/topology/graph.py STATUS_ORDER). The hosts
    # reported once, so a diff may mark them not reporting meanwhile: the
    # tile follows it within a redraw held by the view's last move (HOLD_MS).
    for h in [host, *[h for h in world.containers if f"host:{h}" in tiles][:5]]:
        ids = [f"host:{h}"] + [f"container:{h}:{r.id}" for r in world.containers[h]]
        deadline = time.monotonic() + 5
        while True:
            drawn, statuses = page.evaluate(
                """([tile, ids]) => {
                     const m = window.portolanMap;
                     return [m.cy.getElementById(tile).data('status'),
                             ids.map((id) => m.heldNode(id).status)]; }""",
                [f"host:{h}", ids])
            worst = max(statuses, key=STATUS_ORDER.index)
            if drawn == worst or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        assert drawn == worst, (h, drawn, statuses)
    assert held["status"] != "unknown" or tile["status"] != "ok"


def test_the_tiles_are_drawn_before_the_links_come(fleet_page):
    """A first snapshot sends its 10,500 nodes before its 50,000 links
    (webapp/maps/diff.py encode_snapshot): the tiles, with their status, are
    drawn once the nodes are in, without traffic to tell yet; the edges and
    the traffic join them when the links are in."""
    page = fleet_page
    states = page.evaluate("() => window.__states")
    loading = [s for s in states if s["state"] == "loading"]
    assert loading, [s["state"] for s in states]
    early = loading[0]["drawing"]
    assert early["fleet"] and early["awaitingLinks"], early
    assert early["nodes"] >= HOSTS + CONTAINERS and early["edges"] == 0, early
    assert early["drawnNodes"] > 0 and early["drawnEdges"] == 0, early
    assert loading[0]["tiles"], loading[0]
    assert not any("conn/s" in label for label in loading[0]["tiles"]), loading[0]
    # Then the whole snapshot: live, with edges and each tile's traffic.
    after = states[states.index(loading[0]) + 1:]
    live = next(s for s in after if s["state"] == "live")
    whole = live["drawing"]
    assert not whole["awaitingLinks"] and whole["edges"] > 0.9 * EDGES, whole
    assert whole["drawnEdges"] > 0, whole
    assert live["tiles"], live
    assert all("conn/s" in label for label in live["tiles"]), live["tiles"]
    marks = page.evaluate("() => window.portolanMap.marks")
    assert marks["firstPart"] <= marks["nodesDrawn"] < marks["graphIn"], marks
    first, all_in = page.evaluate(
        "() => [window.portolanMap.firstDrawMs, window.portolanMap.wholeDrawMs]")
    assert first < all_in, (first, all_in)


def test_zoomed_far_out_hosts_are_grouped_by_region_and_zone(fleet_page):
    page = fleet_page
    set_view(page, 0.02)
    nodes = drawn_nodes(page)
    groups = [n for n in nodes if n["kind"] == "group"]
    # 4 regions x 3 zones (bench/synthetic_world.py host_labels).
    assert len(groups) == 12, [n["id"] for n in nodes][:20]
    assert all(n["tile"] and n["status"] in STATUS_ORDER for n in groups)
    assert any("eu-1 / a" in n["label"] and "hosts" in n["label"] for n in groups)
    assert not [n for n in nodes if n["kind"] == "container"]
    assert drawing(page)["detail"] == "group"


def test_zoomed_in_only_containers_in_view_are_drawn_and_panning_stays_local(
        fleet_page, world):
    page = fleet_page
    first = f"container:node000:{world.containers['node000'][0].id}"
    position = page.evaluate("() => window.portolanMap.heldPosition('host:node000')")
    # From the host's tile to its containers: the same id becomes a frame.
    set_view(page, 0.1, position["x"], position["y"])
    assert "host:node000" in {n["id"] for n in drawn_nodes(page) if n["tile"]}
    set_view(page, 0.6, position["x"], position["y"])
    d = drawing(page)
    assert d["detail"] == "container"
    assert 0 < d["drawnNodes"] < 400, d
    nodes = drawn_nodes(page)
    ids = {n["id"] for n in nodes}
    assert first in ids and "host:node000" in ids
    assert not [n["id"] for n in nodes if n["tile"]], "no tile left among containers"
    # Pan far away by dragging: other containers are drawn, the first is not,
    # and nothing is asked of the server (no request, no new socket).
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    # Braces: cy.autoungrabify returns the Cytoscape instance, which Playwright
    # would serialise whole (gigabytes at this size: bench/map_fleet.py).
    page.evaluate("() => { window.portolanMap.cy.autoungrabify(true); }")
    for _ in range(3):
        page.mouse.move(1200, 700)
        page.mouse.down()
        page.mouse.move(100, 100, steps=5)
        page.mouse.up()
    page.wait_for_timeout(300)
    moved = {n["id"] for n in drawn_nodes(page)}
    assert first not in moved and moved - ids, "panning should draw other containers"
    assert drawing(page)["drawnNodes"] < 400
    # The status bar's poll of the analyzer's rule failures runs on a timer,
    # whatever the map does.
    assert [url for url in requests if "/api/rule-failures/" not in url] == []


def search_and_open(page, name: str, target: str) -> None:
    """Find ``name`` with the search box and open its panel (Enter)."""
    page.keyboard.press("f")
    page.wait_for_timeout(300)
    page.fill("#search", name)
    page.locator(f"#search-results button[data-id='{target}']").wait_for()
    page.press("#search", "Enter")
    wait_for_map(page, f"m.cy.getElementById('{target}').nonempty() && "
                       f"m.cy.getElementById('{target}').selected()")
    page.locator("#details").wait_for(state="visible")


def test_search_finds_a_container_that_is_not_drawn_and_jumps_to_it(
        fleet_page, world):
    page = fleet_page
    host, index, name = NEEDLE
    rec = world.containers[host][index]
    target = f"container:{host}:{rec.id}"
    assert page.evaluate(
        f"() => window.portolanMap.cy.getElementById('{target}').empty()")
    search_and_open(page, name, target)
    assert page.locator("#details .details-title").text_content() == rec.name
    wait_for_map(page, "!m.cy.animated()")
    # In view, close enough to read, and the view's part drawn around it.
    inside = page.evaluate(
        f"""() => {{ const cy = window.portolanMap.cy, e = cy.extent();
                    const p = cy.getElementById('{target}').position();
                    return p.x > e.x1 && p.x < e.x2 && p.y > e.y1 && p.y < e.y2; }}""")
    assert inside
    assert page.evaluate("() => window.portolanMap.zoom()") >= 0.8
    d = drawing(page)
    assert d["detail"] == "container" and d["drawnNodes"] < 400, d


def test_diffs_move_the_tile_sums_as_a_fresh_sum_would(fleet_page, world, redis_server):
    """Zoomed out, each diff moves the host and group tiles' sums by what it
    touched (frontend/src/tilesums.js), never summing the 47,533 edges again:
    after diffs of traffic, a container's status and a host moved to another
    zone (its containers' tiles and edges summed into another group), the sums
    kept equal a fresh sum of what the page holds."""
    from collector.reporter import HostReport, RedisReporter, redis_client
    from collector.schema import HostRecord, Keys, container_node_id

    page = fleet_page
    set_view(page, 0.1)  # host tiles
    wait_for_map(page, "m.drawing().detail === 'host'")
    before = page.evaluate("() => window.portolanMap.checkTileSums()")
    assert before is not None and before["count"] == 0, before
    moved_host, failing_host = "node020", "node022"

    def report(more_traffic: int) -> None:
        reporter = RedisReporter(redis_client(redis_server.url), Keys("portolan"),
                                 node_ttl=NODE_TTL)
        for i, host in enumerate([*[f"node{n:03d}" for n in range(20)], moved_host,
                                  failing_host]):
            records = list(world.containers[host])
            if host == failing_host:
                records[0] = dataclasses.replace(records[0], state="exited",
                                                 exit_code=1)
            labels = ({"region": "eu-9", "zone": "z"} if host == moved_host
                      else host_labels(host))
            flows = Counter({(key, "connections"): weight + more_traffic + i
                             for key, weight in world.flows[host]})
            reporter.report(HostReport(
                host=HostRecord(id=host, hostname=host, mode="ebpf", labels=labels),
                containers=records,
                addrs={r.ips[0]: container_node_id(host, r.id) for r in records},
                flows=flows, interval=1.0))
        reporter.client.close()

    report(7)
    failing = container_node_id(failing_host, world.containers[failing_host][0].id)
    wait_for_map(
        page,
        f"(m.heldNode('host:{moved_host}') || {{}}).labels?.region === 'eu-9' && "
        f"m.heldNode('{failing}').state === 'exited' && "
        f"m.drawing().sumUpdates > {before['updates']}",
        timeout_ms=120_000)
    after = page.evaluate("() => window.portolanMap.checkTileSums()")
    # The same sums, moved by the diffs (a sum made afresh counts no update).
    assert after["updates"] > before["updates"], (before, after)
    assert after["differences"] == [] and after["count"] == 0, after
    assert after["tiles"] >= HOSTS and after["hostSums"] > 1000, after
    assert after["groups"] == 13, after  # 12 zones and eu-9 / z
    # Traffic alone (no node came, went or moved): each edge's sums move by
    # the difference of its figures, in one pass (tilesums.js moveEdge).
    report(50)
    wait_for_map(page, f"m.drawing().sumUpdates > {after['updates']}",
                 timeout_ms=120_000)
    again = page.evaluate("() => window.portolanMap.checkTileSums()")
    assert again["differences"] == [] and again["count"] == 0, again


def test_a_drawn_containers_panel_follows_its_moved_metrics(
        fleet_page, world, redis_server):
    """Metrics that moved (``updated_metrics``) go into the node the page
    holds without a redraw; the panel of a drawn container shows them, also
    once a redraw left the element an earlier object of the node
    (livemap.js refreshAttrs: here, after its processes changed). The host
    reports every 0.5 s throughout, as a live collector does, so that no
    other change (its reporting flag) redraws the container meanwhile."""
    from collector.reporter import HostReport, RedisReporter, redis_client
    from collector.schema import HostRecord, Keys, container_node_id

    page = fleet_page
    host, index, name = NEEDLE
    records = [dataclasses.replace(r) for r in world.containers[host]]
    target = container_node_id(host, records[index].id)
    reporter = RedisReporter(redis_client(redis_server.url), Keys("portolan"),
                             node_ttl=NODE_TTL)
    lock, stop = threading.Lock(), threading.Event()

    def report() -> None:
        with lock:
            reporter.report(HostReport(
                host=HostRecord(id=host, hostname=host, mode="ebpf",
                                labels=host_labels(host)),
                containers=list(records),
                addrs={r.ips[0]: container_node_id(host, r.id) for r in records},
                flows=Counter(), interval=0.5))

    def collector() -> None:
        while not stop.wait(0.5):
            report()

    def change(**changes) -> None:
        with lock:
            records[index] = dataclasses.replace(records[index], **changes)
        report()

    metrics = {"cpu_cores": 0.5, "memory_usage_bytes": 64_000_000, "pids": 3}
    change(metrics=dict(metrics))
    thread = threading.Thread(target=collector, daemon=True)
    thread.start()
    try:
        search_and_open(page, name, target)
        wait_for_figure(page, "CPU", "0.50 cores", timeout_ms=60_000)
        change(processes=[{"pid": 7, "command": "app", "user": "root", "port": 8080}])
        wait_for_map(page, f"(m.heldNode('{target}').processes || []).length === 1",
                     timeout_ms=60_000)
        change(metrics={**metrics, "cpu_cores": 2.5})
        wait_for_figure(page, "CPU", "2.5 cores", timeout_ms=60_000)
        assert page.evaluate(
            f"() => window.portolanMap.cy.getElementById('{target}')"
            ".data('attrs').metrics") == {**metrics, "cpu_cores": 2.5}
    finally:
        stop.set()
        thread.join()
        reporter.client.close()
