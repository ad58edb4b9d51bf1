"""The map in Debian's Chromium: login, live graph, updates, hostile names.

Daphne runs as a subprocess against the test Redis, with its own database and
var/ directory; hosts and containers are written through the collector's real
RedisReporter, so the page sees exactly what a collector would produce.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import free_port, require, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "admin", "browser-test-pw-1"
HOST = "br-h1"
EVIL = "<img src=x onerror=alert(1)>"
ARTIFACTS = ROOT / "artifacts"


def ensure_static_build() -> None:
    """Build the front end (offline, from the lock file) unless it is there."""
    if (ROOT / "static/portolan/map.js").exists():
        return
    require(shutil.which("npm") is not None, "npm not installed: cannot build map.js")
    frontend = ROOT / "frontend"
    if not (frontend / "node_modules").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=frontend, check=True
        )
    subprocess.run(["npm", "run", "build"], cwd=frontend, check=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    """Daphne serving the real ASGI app on a free loopback port."""
    ensure_static_build()
    tmp = tmp_path_factory.mktemp("portolan-web")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "REDIS_URL": redis_server.url,
        "DATABASE_PATH": str(tmp / "db.sqlite3"),
        "PORTOLAN_VAR_DIR": str(tmp / "var"),
        "DJANGO_SUPERUSER_USERNAME": USER,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.invalid",
        "DEBUG": "false",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*manage, "createsuperuser", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    log_path = tmp / "daphne.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "webapp.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: _healthy(url) or proc.poll() is not None, timeout=30):
            raise RuntimeError("Daphne did not answer /healthz")
        if proc.poll() is not None:
            raise RuntimeError(f"Daphne exited:\n{log_path.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        # Shown by pytest when a test of this module failed.
        print(log_path.read_text()[-4000:])


@pytest.fixture(scope="module")
def browser():
    require(os.path.exists(CHROMIUM), "Debian's chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, redis_client):
    """A logged-in map page (Redis emptied first), with dialogs recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.dialogs = []

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.base_url = server
    yield page
    context.close()


def log_in(page, path="/"):
    page.goto(page.base_url + path)
    assert "/login/" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.wait_for_function("() => window.portolanMap !== undefined")


class FakeHost:
    """A collector's reports for one host, written with the real reporter."""

    def __init__(self, url: str, host: str = HOST):
        self.host = host
        self.reporter = RedisReporter(reporter_client(url), Keys("portolan"))
        self.containers: list[ContainerRecord] = []
        self.flows: Counter = Counter()

    def node(self, cid: str) -> str:
        return container_node_id(self.host, cid)

    def add(self, cid: str, name: str, ip: str, **attrs) -> None:
        self.containers.append(
            ContainerRecord(id=cid, name=name, ips=[ip], state="running", **attrs)
        )

    def connect(self, client: str, server_ip: str, port: int, **counters) -> None:
        key = FlowKey(self.node(client), "out", server_ip, port)
        for name, value in counters.items():
            self.flows[(key, name)] += value

    def report(self) -> None:
        report = HostReport(
            host=HostRecord(id=self.host, hostname=self.host, mode="procfs"),
            containers=list(self.containers),
            addrs={ip: self.node(c.id) for c in self.containers for ip in c.ips},
            flows=self.flows,
        )
        self.flows = Counter()
        assert self.reporter.report(report)


def wait_for_map(page, predicate_js: str, timeout_ms: int = 10_000) -> None:
    page.wait_for_function(
        f"() => {{ const m = window.portolanMap; return !!m && ({predicate_js}); }}",
        timeout=timeout_ms,
    )


def test_map_shows_two_containers_and_their_edge(page, redis_server):
    host = FakeHost(redis_server.url)
    host.add("c-client", "pt-client", "10.88.0.2", image="busybox")
    host.add("c-server", "pt-server", "10.88.0.3", image="busybox", ports=[80])
    host.connect("c-client", "10.88.0.3", 80, connections=12, failed=1)
    host.report()

    log_in(page)
    wait_for_map(
        page,
        "m.nodeNames().includes('pt-client') && m.nodeNames().includes('pt-server')"
        " && m.edgeCount() === 1",
    )
    summary = page.evaluate("() => window.portolanMap.summary()")
    nodes = {n["id"]: n for n in summary["nodes"]}
    assert nodes[host.node("c-client")]["parent"] == f"host:{HOST}"
    assert nodes[host.node("c-server")]["status"] == "ok"
    assert summary["edges"] == [
        {
            "source": host.node("c-client"),
            "target": host.node("c-server"),
            "connections": 12,
            "failed": 1,
        }
    ]
    bar = page.locator("#statusbar")
    assert bar.get_attribute("data-state") == "live"
    assert bar.get_attribute("data-edges") == "1"
    assert "3 nodes" in bar.inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)  # let the canvas draw its last frame
    page.screenshot(path=str(ARTIFACTS / "map-container.png"))

    # The other levels of the same graph, from the level switcher.
    page.click("nav.levels >> text=Hosts")
    wait_for_map(page, "m.level === 'host' && m.state() === 'live'")
    assert page.evaluate("() => window.portolanMap.nodeNames()") == [HOST]
    page.screenshot(path=str(ARTIFACTS / "map-host.png"))
    page.click("nav.levels >> text=Services")
    wait_for_map(page, "m.level === 'service' && m.edgeCount() === 1")
    summary = page.evaluate("() => window.portolanMap.summary()")
    service = next(n for n in summary["nodes"] if n["type"] == "service")
    assert service["name"] == "pt-server:80/tcp"
    assert service["parent"] == host.node("c-server")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "map-service.png"))
    assert page.dialogs == []


def test_new_container_appears_without_reload(page, redis_server):
    host = FakeHost(redis_server.url)
    host.add("c-a", "pt-alpha", "10.88.1.2")
    host.report()
    log_in(page)
    wait_for_map(page, "m.nodeNames().includes('pt-alpha')")
    before = page.evaluate(
        f"() => window.portolanMap.pagePosition({host.node('c-a')!r})"
    )

    host.add("c-b", "pt-beta", "10.88.1.3")
    host.connect("c-b", "10.88.1.2", 8080, connections=1)
    started = time.monotonic()
    host.report()
    wait_for_map(
        page,
        "m.nodeNames().includes('pt-beta') && m.edgeCount() === 1",
        timeout_ms=2_000,
    )
    assert time.monotonic() - started < 2.5
    after = page.evaluate(
        f"() => window.portolanMap.pagePosition({host.node('c-a')!r})"
    )
    # Stable layout: the node already shown did not move.
    assert after == before
    assert page.url.endswith("/")  # no reload, no redirect
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map-update.png"))


def test_hostile_names_render_as_text(page, redis_server):
    host = FakeHost(redis_server.url)
    host.add(
        "c-evil",
        EVIL,
        "10.88.2.2",
        labels={"com.example.note": "<script>alert(2)</script>"},
    )
    host.report()

    log_in(page)
    wait_for_map(page, f"m.nodeNames().includes({EVIL!r})")
    point = page.evaluate(
        f"() => window.portolanMap.pagePosition({host.node('c-evil')!r})"
    )

    page.mouse.move(point["x"], point["y"])
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    assert EVIL in tooltip.text_content()

    page.mouse.click(point["x"], point["y"])
    details = page.locator("#details")
    details.wait_for(state="visible")
    assert page.locator("#details .details-title").text_content() == EVIL
    assert "<script>alert(2)</script>" in details.text_content()

    # Shown as text, never parsed: no element came out of the data.
    assert page.locator("img").count() == 0
    assert page.locator("#details script, #tooltip script").count() == 0
    page.wait_for_timeout(300)
    assert page.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map-hostile-name.png"))
