"""Webhook notifications of status changes, sent from a background thread.

One POST (JSON) per change of a target's status, each with a unique ``id``
(also in the ``X-Portolan-Event`` header) so that a receiver can drop a repeat.
A failed delivery (connection error, timeout, a garbled or 5xx answer) is
retried with exponential backoff; a 4xx answer is not retried. The queue is
bounded: when the receiver is down for long, the oldest pending notifications
are dropped (and counted) rather than piling up into a storm when it comes back.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid

__all__ = ["WebhookNotifier"]

log = logging.getLogger("portolan.anomalies.notify")


class WebhookNotifier:
    """Delivers JSON payloads to one URL, in order, from one thread."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 5,
                 backoff: float = 0.5, max_backoff: float = 30.0,
                 max_queue: int = 1000):
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portolan-webhook",
                                        daemon=True)
        self._thread.start()

    def notify(self, payload: dict) -> str:
        """Queue one notification; return its id."""
        payload = {"id": uuid.uuid4().hex, **payload}
        while True:
            try:
                self.queue.put_nowait(payload)
                return payload["id"]
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    self.dropped += 1
                    log.warning("webhook queue full: dropped the oldest notification")
                except queue.Empty:
                    pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up."""
        done = threading.Event()

        def wait():
            self.queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (for up to ``timeout`` s), then stop."""
        self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(payload)
            except Exception:  # noqa: BLE001 - one bad delivery must not end the thread
                self.failed += 1
                log.exception("webhook: could not deliver notification %s",
                              payload.get("id"))
            finally:
                self.queue.task_done()

    def _deliver(self, payload: dict) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        delay = self.backoff
        for attempt in range(self.retries + 1):
            error = self._post(body, payload["id"])
            if error is None:
                self.sent += 1
                return
            if error == "client error" or attempt == self.retries:
                break
            log.info("webhook delivery failed (%s); retrying in %.1f s", error, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_backoff)
        self.failed += 1
        log.warning("webhook: gave up on notification %s for %s", payload["id"],
                    payload.get("target"))

    def _post(self, body: bytes, event_id: str) -> str | None:
        """POST once; None on success, else a short description of the failure."""
        request = urllib.request.Request(  # noqa: S310 - the URL is validated
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "X-Portolan-Event": event_id,
                     "User-Agent": "portolan-anomalies"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                answer.read()
            return None
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code != 429:
                return "client error"
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))
        except (http.client.HTTPException, ValueError) as exc:
            # A garbled answer (short body, bad status line, overlong header):
            # the receiver may be mid-restart, so it is retried like a 5xx.
            return f"bad answer: {exc!r}"
