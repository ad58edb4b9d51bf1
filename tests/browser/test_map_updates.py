"""The map merges the builder's partial updates (``updated_links``: an edge's
changed keys alone) into the edges it holds (issue 17)."""

from __future__ import annotations

import json

from tests.browser.test_map import (  # noqa: F401 - the module's fixtures
    FakeHost,
    browser,
    log_in,
    page,
    server,
    wait_for_figure,
    wait_for_live,
    wait_for_map,
)
from webapp.maps.frames import unpack_frame


def held_edge(tab, source: str, target: str) -> dict:
    """The edge as the map holds it (every key the server sent), as JSON."""
    return tab.evaluate(
        """([s, t]) => JSON.parse(JSON.stringify([...window.portolanMap.cy.edges()]
            .find((e) => e.source().id() === s && e.target().id() === t)
            .data("attrs")))""", [source, target])


def test_an_edge_takes_its_changed_counters_and_keeps_the_rest(
        page, redis_server):  # noqa: F811 - the fixture
    frames: list[dict] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: frames.append(json.loads(
            unpack_frame(frame) if isinstance(frame, bytes) else frame))))
    host = FakeHost(redis_server.url)
    host.add("c-client", "pt-caller", "10.88.20.2")
    host.add("c-server", "pt-callee", "10.88.20.3")
    host.connect("c-client", "10.88.20.3", 80, connections=2, bytes_sent=500)
    host.report()
    log_in(page, "/?level=container")
    wait_for_live(page, "container")
    wait_for_map(page, "m.edgeCount() >= 1")
    client, callee = host.node("c-client"), host.node("c-server")
    before = held_edge(page, client, callee)
    assert before["connections"] == 2 and before["bytes_sent"] == 500

    # Only counters move: the builder sends the edge's changed keys alone.
    host.connect("c-client", "10.88.20.3", 80, connections=5)
    host.report()
    wait_for_map(page, "m.summary().edges.some((e) => e.connections === 7)")
    updates = [u for f in frames if f.get("type") == "diff"
               for u in f.get("updated_links", [])
               if (u["source"], u["target"]) == (client, callee)]
    assert updates and "bytes_sent" not in updates[-1], updates
    after = held_edge(page, client, callee)
    assert after["connections"] == 7 and after["connections_per_s"] == 5
    assert after["bytes_sent"] == 500  # not in the update: kept
    assert after.keys() == before.keys()


def test_a_container_takes_its_moved_metrics_and_keeps_the_rest(
        page, redis_server):  # noqa: F811 - the fixture
    """The builder sends a container's moved figures alone
    (``updated_metrics``); the panel shows them, also after an update that
    gave the node a new object (its processes changed)."""
    frames: list[dict] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: frames.append(json.loads(
            unpack_frame(frame) if isinstance(frame, bytes) else frame))))
    host = FakeHost(redis_server.url)
    metrics = {"cpu_cores": 0.5, "memory_working_set_bytes": 48_000_000,
               "memory_usage_bytes": 64_000_000, "pids": 3}
    host.add("c-app", "pt-app", "10.88.21.2", metrics=dict(metrics))
    host.report()
    log_in(page, "/?level=container")
    wait_for_live(page, "container")
    app = host.node("c-app")
    wait_for_map(page, "m.nodeNames().includes('pt-app')")
    point = page.evaluate(f"() => window.portolanMap.pagePosition({app!r})")
    page.mouse.click(point["x"], point["y"])
    page.locator("#details").wait_for(state="visible")
    wait_for_figure(page, "CPU", "0.50 cores")

    [record] = host.containers
    record.metrics = {**metrics, "cpu_cores": 2.5}
    host.report()
    wait_for_figure(page, "CPU", "2.5 cores", timeout_ms=30_000)
    sent = [u for f in frames if f.get("type") == "diff"
            for u in f.get("updated_metrics", []) if u["id"] == app]
    assert sent and sent[-1]["metrics"] == {"cpu_cores": 2.5}, sent
    assert not any("metrics" in u for f in frames if f.get("type") == "diff"
                   for u in f.get("updated_nodes", []) if u["id"] == app)
    held = page.evaluate(
        f"() => window.portolanMap.cy.getElementById({app!r}).data('attrs').metrics")
    assert held == {**metrics, "cpu_cores": 2.5}

    # The processes change (a new object for the node), then the memory.
    record.processes = [{"node": f"{app}:p", "pids": [7], "cmdline": "app"}]
    host.report()
    wait_for_map(page, f"(m.cy.getElementById({app!r}).data('attrs').processes"
                       " || []).length === 1")
    record.metrics = {**metrics, "cpu_cores": 2.5,
                      "memory_working_set_bytes": 96_000_000}
    host.report()
    wait_for_figure(page, "memory", "96.0MB", timeout_ms=30_000)
    wait_for_figure(page, "CPU", "2.5 cores")
