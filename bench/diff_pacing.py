"""Diffs at a known pace for bench/map_fleet.py: the page's socket messages
held in the page and handed on one per interval.

The builder's diffs reach a page in bursts (0 to 23 in a 3 s measurement:
the writers' rounds and the builder's do not line up), so fps measured while
they come compares different amounts of work. Here the bench, not the page,
wraps the browser's ``WebSocket`` before the page's script runs
(``add_init_script``): while holding, every message event the page's socket
gets is queued as it came; ``pace(per_second)`` hands the queued events to the
page's own listener (socket.js: inflate, JSON.parse, then livemap.js applies
and redraws) one per interval, in arrival order. The page's code and bundle
are unchanged; what it parses and applies are the builder's real diffs.

What this does not cover: when the builder makes and sends its diffs (a diff
handed on at 4/s may have waited seconds in the queue; the builder itself
sends at most 4 a second and here about 1), receiving the frames (that
happens when they arrive, held or not), and whether a steady pace is what a
user gets (bursts are what the page really sees; this measures fps against a
known load, not the load).

Also timed here, bench-side: ``JSON.parse`` of texts over 100,000
characters (a diff's parse in socket.js; the page's own ``diffs.ms`` starts
after it), and how many characters they held (diffs differ in size).
"""

from __future__ import annotations

import time

PACING_INIT_JS = """
(() => {
  const Native = window.WebSocket;
  const gate = { holding: false, queue: [], timer: null, arrived: 0,
                 released: 0, parseMs: 0, parses: 0, parseChars: 0 };
  const deliver = (item) => {
    gate.released += 1;
    item.fn.call(item.socket, item.event);
  };
  gate.hold = () => {
    window.clearInterval(gate.timer);
    gate.timer = null;
    gate.holding = true;
  };
  gate.pace = (intervalMs) => {
    gate.hold();
    gate.timer = window.setInterval(() => {
      const item = gate.queue.shift();
      if (item) deliver(item);
    }, intervalMs);
  };
  gate.flow = () => {
    gate.hold();
    gate.holding = false;
    while (gate.queue.length) deliver(gate.queue.shift());
  };
  class PacedSocket extends Native {
    addEventListener(type, fn, options) {
      if (type !== "message") return super.addEventListener(type, fn, options);
      return super.addEventListener(type, (event) => {
        gate.arrived += 1;
        const item = { fn, socket: this, event };
        if (gate.holding || gate.queue.length) gate.queue.push(item);
        else deliver(item);
      }, options);
    }
  }
  window.WebSocket = PacedSocket;
  const parse = JSON.parse;
  JSON.parse = function (text, reviver) {
    if (typeof text !== "string" || text.length < 100000) {
      return parse.call(this, text, reviver);
    }
    const started = performance.now();
    try {
      return parse.call(this, text, reviver);
    } finally {
      gate.parseMs += performance.now() - started;
      gate.parses += 1;
      gate.parseChars += text.length;
    }
  };
  window.__pacing = gate;
})();
"""

STATE_JS = """
() => { const g = window.__pacing;
        return { queued: g.queue.length, arrived: g.arrived, released: g.released,
                 parseMs: g.parseMs, parses: g.parses, parseChars: g.parseChars,
                 holding: g.holding }; }
"""


class Pacing:
    """The gate of one page (its init script added before ``goto``)."""

    def __init__(self, page) -> None:
        self.page = page
        page.add_init_script(PACING_INIT_JS)

    def state(self) -> dict:
        return self.page.evaluate(STATE_JS)

    def hold(self) -> None:
        self.page.evaluate("() => { window.__pacing.hold(); }")

    def flow(self) -> None:
        self.page.evaluate("() => { window.__pacing.flow(); }")

    def pace(self, per_second: float) -> None:
        self.page.evaluate("(ms) => { window.__pacing.pace(ms); }", 1000 / per_second)

    def settle(self, quiet_s: float = 1.0, timeout: float = 30) -> None:
        """Until the page applied no diff for ``quiet_s`` (what it got before
        holding may still be in its own queue: socket.js inflates in turn)."""
        applied = "() => window.portolanMap.drawing().diffs.applied"
        deadline = time.monotonic() + timeout
        last, since = self.page.evaluate(applied), time.monotonic()
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
            now = self.page.evaluate(applied)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return

    def wait_queued(self, count: int, timeout: float) -> int:
        """Until ``count`` messages are held (or ``timeout`` s): how many are."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.state()["queued"]
            if queued >= count or time.monotonic() > deadline:
                return queued
            self.page.wait_for_timeout(250)
