"""The map socket's binary frames in Chromium (issue 17): snapshots and diffs
come as zlib-compressed binary frames (made once for every open map) and the
page applies them; a socket without a login, or from another origin, still
gets no frame at all."""

from __future__ import annotations

import base64
import json
import os
import socket

from tests.browser.test_map import (  # noqa: F401 - the module's fixtures
    FakeHost,
    browser,
    log_in,
    page,
    server,
    wait_for_live,
    wait_for_map,
)
from webapp.maps.frames import unpack_frame

# Opens the map socket from the page and reports what happened to it: its
# close code, and how many messages came first.
OPEN_SOCKET = """(url) => new Promise((done) => {
    const socket = new WebSocket(url);
    let messages = 0;
    socket.addEventListener("message", () => { messages += 1; });
    socket.addEventListener("close", (e) => done({code: e.code, messages}));
    setTimeout(() => { socket.close(); done({code: "open", messages}); }, 5000);
})"""


def test_binary_frames_reach_the_map_and_are_applied(page, redis_server):  # noqa: F811
    frames: list = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: frames.append(frame)))
    host = FakeHost(redis_server.url)
    host.add("c-a", "pt-frame-a", "10.88.30.2")
    host.report()
    log_in(page, "/?level=container")
    wait_for_live(page, "container")
    wait_for_map(page, "m.nodeNames().includes('pt-frame-a')")

    host.add("c-b", "pt-frame-b", "10.88.30.3")
    host.connect("c-b", "10.88.30.2", 8080, connections=3)
    host.report()
    wait_for_map(page, "m.nodeNames().includes('pt-frame-b') && m.edgeCount() === 1")
    assert "/login/" not in page.url

    binary = [f for f in frames if isinstance(f, bytes)]
    texts = [f for f in frames if isinstance(f, str)]
    messages = [json.loads(unpack_frame(f)) for f in binary]
    types = [m["type"] for m in messages]
    assert types[0] == "snapshot" and "diff" in types, types
    # Text frames are left for errors (here: the builder's first graph was
    # not stored yet when the page opened).
    assert all(json.loads(t)["type"] == "error" for t in texts), texts
    # The page counts the JSON it inflated and the (smaller) bytes it got.
    received = page.evaluate("() => window.portolanMap.received()")
    assert received["messages"] == len(frames)
    assert received["chars"] == sum(len(unpack_frame(f)) for f in binary) + sum(
        map(len, texts))
    assert received["bytes"] == sum(map(len, binary)) + sum(map(len, texts))
    assert received["bytes"] < received["chars"]


def handshake(base_url: str, origin: str, cookie: str = "") -> tuple[bytes, int]:
    """A raw WebSocket handshake on the map socket: the status line, and the
    first frame's opcode (0 when none came within 5 s or the socket closed)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        key = base64.b64encode(os.urandom(16)).decode()
        conn.sendall((
            f"GET /ws/topology/?level=container HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\nCookie: {cookie}\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
        head, _, rest = reply.partition(b"\r\n\r\n")
        conn.settimeout(5)
        try:
            rest = rest or conn.recv(2)
        except TimeoutError:
            rest = b""
        return head.split(b"\r\n")[0], (rest[0] & 0x0F) if rest else 0


def test_a_socket_without_login_or_from_another_origin_gets_no_frame(
        page, redis_server):  # noqa: F811
    host = FakeHost(redis_server.url)
    host.add("c-a", "pt-frame-secret", "10.88.31.2")
    host.report()
    origin = page.base_url
    # From the page, logged out: the handshake is refused, nothing is sent.
    page.goto(page.base_url + "/login/")
    socket_url = page.base_url.replace("http://", "ws://") + "/ws/topology/"
    refused = page.evaluate(OPEN_SOCKET, socket_url + "?level=container")
    assert refused["messages"] == 0 and refused["code"] != "open", refused

    log_in(page, "/?level=container")
    wait_for_map(page, "m.nodeNames().includes('pt-frame-secret')")
    session = next(c for c in page.context.cookies() if c["name"] == "sessionid")
    cookie = f"sessionid={session['value']}"
    # The same session from the page's origin: a binary frame first...
    status, opcode = handshake(page.base_url, origin, cookie)
    assert b" 101 " in status and opcode == 2, (status, opcode)
    # ... but from another origin, or with no session: refused, no frame.
    for other_origin, other_cookie in (("http://evil.example", cookie),
                                       (origin, "")):
        status, opcode = handshake(page.base_url, other_origin, other_cookie)
        assert b" 101 " not in status and opcode == 0, (other_origin, status)
