"""Issue 19 in Chromium: the map under its Content-Security-Policy, and hostile
strings in every field a collector can report, shown as text, never run.

Daphne, the test Redis and the login are those of ``test_map`` (its fixtures);
records are written with the collector's real RedisReporter. Every page here
listens for ``securitypolicyviolation`` from before its first script: a single
report fails the test (an escaping slip would show up as one, since the CSP
blocks the inline handler it would create).
"""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import quote

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    process_node_id,
)
from tests.browser.test_map import (  # noqa: F401 - fixtures
    browser,
    log_in,
    server,
    settled,
    two_hosts,
    wait_for_live,
    wait_for_map,
)
from webapp.topology.graph import UNNAMED_PROCESS, UNNAMED_REASON

pytestmark = pytest.mark.browser

# Runs before any script of the page (and outside its CSP): records every
# violation report and every call a hostile string would make if it ran.
WATCH = """
window.__csp = [];
window.__pwned = [];
window.pwn = (what) => window.__pwned.push(String(what));
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push({directive: e.violatedDirective, blocked: e.blockedURI,
                     sample: e.sample, source: e.sourceFile, line: e.lineNumber});
});
"""


@pytest.fixture
def page(browser, server, redis_client):  # noqa: F811 - test_map's fixtures
    """A page that records CSP violations, dialogs and uncaught errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(WATCH)
    page = context.new_page()
    page.dialogs, page.errors, page.console_csp = [], [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: "Content Security Policy" in m.text
            and page.console_csp.append(m.text))
    page.base_url = server
    yield page
    context.close()
    assert page.errors == [], page.errors
    server.assert_alive("the map's server died during the test")


def violations(page) -> list:
    return page.evaluate("() => window.__csp") + page.console_csp


def test_csp_header_forbids_inline_eval_and_framing(page):
    response = page.goto(page.base_url + "/login/")
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_map_works_under_the_csp_with_no_violation(page, redis_server):
    web, _other = two_hosts(redis_server.url)
    log_in(page, "/?level=host")
    wait_for_live(page, "host")
    wait_for_map(page, "m.nodeNames().includes('br-h1')")

    # Zoom in by the level switcher, open a panel, search, filter.
    page.click("nav.levels a[data-level=container]")
    wait_for_live(page, "container")
    wait_for_map(page, "m.nodeNames().includes('pt-server')")
    page.click("#fit")
    # The fit's animation (started by the click): over once nothing animates.
    page.wait_for_function("() => !window.portolanMap.cy.animated()")
    point = page.evaluate(
        f"() => window.portolanMap.pagePosition({web.node('c-server')!r})")
    page.mouse.move(point["x"], point["y"])
    page.locator("#tooltip").wait_for(state="visible")
    page.mouse.click(point["x"], point["y"])
    page.locator("#details").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#details').dataset.api"
                           " === 'ok'")
    page.fill("#search", "pt-")
    page.locator("#search-results").wait_for(state="visible")
    page.locator("#search-results button").first.click()
    page.select_option("#filter-project", "shop")
    page.wait_for_function("() => location.search.includes('project=shop')")
    page.fill("#filter-label", "tier=front")
    page.select_option("#filter-project", "")
    page.fill("#filter-label", "")

    # The time slider: into the past, then live again.
    web.report(now=time.time() - 300)
    page.locator("#time").fill("-300")
    wait_for_map(page, "m.state() === 'past'")
    page.click("#live")
    wait_for_map(page, "m.state() === 'live'")
    settled(page)
    assert violations(page) == []

    # The listener itself works: an inline <style> is a violation.
    page.evaluate("""() => { const s = document.createElement('style');
                             s.textContent = 'body { color: red }';
                             document.head.append(s); }""")
    page.wait_for_function("() => window.__csp.length > 0")
    assert violations(page)[0]["directive"].startswith("style-src")


@pytest.mark.parametrize("path", ["/account/tokens/", "/account/password/",
                                  "/admin/", "/admin/auth/user/",
                                  "/admin/axes/accessattempt/"])
def test_account_and_admin_pages_have_no_violation(page, path):
    log_in(page, "/")
    page.goto(page.base_url + path)
    page.wait_for_load_state("load")
    settled(page)
    assert page.url.endswith(path)
    assert violations(page) == []


def test_login_page_and_throttle_message_have_no_violation(page):
    page.goto(page.base_url + "/login/")
    page.fill("input[name=username]", "nobody-here")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.locator(".form-error").wait_for()
    assert violations(page) == []


# ------------------------------------------------------------------ hostile


def hostile(field: str) -> str:
    """A string that runs ``pwn(field)`` wherever it is parsed as HTML (in a
    text node or in a quoted attribute) instead of shown as text."""
    return (f"\"'><img src=x onerror=pwn('{field}')>"
            f"<script>pwn('{field}')</script>{{{{{field}}}}}")


HOST = "hostile-h1"  # host ids are checked (letters, digits, . _ -)
CID = "c-hostile"
PORT = 8080


def write_hostile_world(url: str) -> dict[str, str]:
    """A host, a container, a host process and a service whose every string is
    hostile; returns the node ids by role."""
    H = hostile
    container = ContainerRecord(
        id=CID, name=H("name"), image=H("image"), state="running",
        ips=["10.66.0.2"], ports=[PORT],
        labels={H("label-key"): H("label-value"),
                "com.docker.compose.project": H("compose-project"),
                "io.kubernetes.pod.namespace": H("namespace")},
        processes=[{"pid": 7, "command": H("process-command"),
                    "user": H("process-user"), "port": PORT}],
        command=H("command"),
        compose_project=H("compose-project"), compose_service=H("compose-service"),
        k8s_pod=H("k8s-pod"), k8s_namespace=H("namespace"),
        published=[{"ip": "0.0.0.0", "port": 18080, "target": PORT,
                    "proto": "tcp"}],
    )
    client = ContainerRecord(id="c-client", name="pt-client", state="running",
                             ips=["10.66.0.3"])
    # An id is Docker's hex, but a collector's report could carry anything.
    odd_id = ContainerRecord(id=H("container-id"), name="pt-odd-id",
                             state="running")
    process = process_node_id(HOST, H("process-name"))
    unnamed = process_node_id(HOST, "")  # a server the collector could not name
    host = HostRecord(
        id=HOST, hostname=H("hostname"), kernel=H("kernel"), mode="procfs",
        mode_reason=H("mode-reason"), labels={H("host-label-key"):
                                              H("host-label-value")},
        processes=[{"node": process, "pids": [99, 101], "cmdline": H("cmdline")}],
    )
    flows = Counter()
    flows[(FlowKey(container_node_id(HOST, "c-client"), "out", "10.66.0.2", PORT),
           "connections")] += 3
    flows[(FlowKey(process, "out", "10.66.0.2", PORT), "connections")] += 2
    flows[(FlowKey(unnamed, "out", "10.66.0.2", PORT), "connections")] += 1
    reporter = RedisReporter(reporter_client(url), Keys("portolan"))
    assert reporter.report(HostReport(
        host=host, containers=[container, client, odd_id],
        addrs={"10.66.0.2": container_node_id(HOST, CID),
               "10.66.0.3": container_node_id(HOST, "c-client")},
        flows=flows))
    reporter.client.close()
    return {"host": f"host:{HOST}", "container": container_node_id(HOST, CID),
            "process": process, "unnamed": unnamed,
            "odd_id": container_node_id(HOST, H("container-id"))}


def open_panel(page, level: str, node_id: str) -> str:
    """The panel's text for ``node_id`` at ``level``, opened by a shared link."""
    page.goto(f"{page.base_url}/?level={level}&sel={quote(node_id, safe='')}")
    wait_for_live(page, level)
    details = page.locator("#details")
    details.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#details').dataset.api"
                           " === 'ok'")
    return details.text_content()


def identity(page) -> dict[str, str]:
    """The open panel's Identity rows as shown: term -> the text of its value."""
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#details .identity dt')].map(
            (dt) => [dt.textContent, dt.nextElementSibling.textContent]))""")


def node_attrs(page, node_id: str) -> dict:
    return page.evaluate(
        "(id) => window.portolanMap.cy.getElementById(id).data('attrs')", node_id)


def test_hostile_strings_in_every_field_are_text(page, redis_server):
    ids = write_hostile_world(redis_server.url)
    H = hostile
    log_in(page, "/?level=container")
    wait_for_map(page, f"m.nodeNames().includes({H('name')!r})")

    shown = open_panel(page, "container", ids["container"])
    for field in ("name", "image", "label-key", "label-value", "compose-project",
                  "namespace"):
        assert H(field) in shown, field
    page.locator("#details table").first.wait_for()
    for field in ("process-command", "process-user"):  # from the node API
        page.wait_for_function("(s) => document.querySelector('#details')"
                               ".textContent.includes(s)", arg=H(field))
    # The container's command, compose service and pod: its identity rows,
    # each value the hostile string itself, as text.
    rows = identity(page)
    for term, field in (("command", "command"), ("compose service", "compose-service"),
                        ("pod", "k8s-pod")):
        assert rows.get(term) == H(field), (term, rows)
    # The filter menus and the search list them as text too.
    assert H("compose-project") in page.locator("#filter-project").text_content()
    assert H("image") in page.locator("#filter-image").text_content()
    assert H("namespace") in page.locator("#filter-ns").text_content()
    page.fill("#search", "\"'><img")
    page.locator("#search-results").wait_for(state="visible")
    assert H("name") in page.locator("#search-results").text_content()
    # The tooltip.
    point = page.evaluate(
        f"() => window.portolanMap.pagePosition({ids['container']!r})")
    page.mouse.move(point["x"], point["y"])
    page.locator("#tooltip").wait_for(state="visible")
    assert H("name") in page.locator("#tooltip").text_content()

    # The id is shown as the node id, which quotes it.
    assert ids["odd_id"] in open_panel(page, "container", ids["odd_id"])

    shown = open_panel(page, "host", ids["host"])
    for field in ("hostname", "kernel", "mode-reason", "host-label-key",
                  "host-label-value"):
        assert H(field) in shown, field

    shown = open_panel(page, "container", ids["process"])
    assert H("process-name") in shown
    assert node_attrs(page, ids["process"])["cmdline"] == H("cmdline")
    rows = identity(page)
    assert rows.get("command line") == H("cmdline"), rows
    assert rows.get("pids") == "99, 101", rows
    assert "no name because" not in rows, rows

    # A process the collector could not name says why, and is never "unknown".
    open_panel(page, "container", ids["unnamed"])
    assert page.locator("#details .details-title").text_content() == UNNAMED_PROCESS
    assert identity(page).get("no name because") == UNNAMED_REASON

    page.goto(f"{page.base_url}/?level=service")
    wait_for_live(page, "service")
    wait_for_map(page, f"m.nodeNames().some((n) => n.startsWith({H('name')!r})"
                       f" && n.endsWith(':{PORT}/tcp'))")

    # Nothing ran and nothing was parsed: no element came out of the data.
    settled(page)
    assert page.evaluate("() => window.__pwned") == []
    assert page.dialogs == []
    assert page.locator("img").count() == 0
    assert page.evaluate(
        "() => [...document.scripts].filter((s) => s.text.includes('pwn(')).length"
    ) == 0
    assert violations(page) == []
