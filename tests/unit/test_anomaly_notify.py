"""Webhook notifier: a garbled answer is retried and never ends the thread."""

import json
import socket
import threading

import pytest

from webapp.anomalies.notify import WebhookNotifier

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _read_request(conn: socket.socket) -> bytes:
    """One HTTP request: its headers and a body of Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return body


@pytest.fixture
def server():
    """A raw HTTP server on 127.0.0.1 that sends the queued answers in turn
    (then 200 OK), and records the bodies it received."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    answers: list[bytes] = []
    bodies: list[dict] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                bodies.append(json.loads(_read_request(conn) or b"null"))
                conn.sendall(answers.pop(0) if answers else OK)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/hook", answers, bodies
    stop.set()
    thread.join(2)
    srv.close()


@pytest.mark.parametrize("garbled", [
    # IncompleteRead: the body is shorter than Content-Length says.
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
    # BadStatusLine.
    b"NOT HTTP AT ALL\r\n\r\n",
    # LineTooLong: a header line over http.client's limit.
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
], ids=["incomplete_read", "bad_status_line", "line_too_long"])
def test_a_garbled_answer_is_retried_and_the_thread_lives_on(server, garbled):
    url, answers, bodies = server
    answers.append(garbled)
    n = WebhookNotifier(url, timeout=2, retries=2, backoff=0.05)
    try:
        first = n.notify({"target": "a"})
        assert n.flush(10)
        second = n.notify({"target": "b"})
        assert n.flush(10)
        assert n._thread.is_alive()
        assert (n.sent, n.failed) == (2, 0)
        # The garbled answer's notification was sent again, then the next one.
        assert [b["id"] for b in bodies] == [first, first, second]
    finally:
        n.close(2)


def test_an_unexpected_error_counts_as_failed_and_the_thread_lives_on(server):
    url, _answers, bodies = server
    n = WebhookNotifier(url, timeout=2, retries=0, backoff=0.05)
    try:
        n.notify({"target": "a", "detail": object()})  # not JSON: _deliver raises
        assert n.flush(10)
        second = n.notify({"target": "b"})
        assert n.flush(10)
        assert n._thread.is_alive()
        assert (n.sent, n.failed) == (1, 1)
        assert [b["id"] for b in bodies] == [second]
    finally:
        n.close(2)
