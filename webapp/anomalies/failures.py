"""Rule checks that raised: what a failure leaves behind, counted in Redis
beside the analysis and read back for ``/healthz`` and the map's status bar.

``evaluate_rules`` skips a check that raises, so one broken check does not
blind the others. But a skipped check finds nothing, and nothing found reads
as "all is well": so the analyzer counts every failure in
``P:{anomaly}:failures`` (``webapp.anomalies.keys``), in the transaction that
publishes the step (the ``{anomaly}`` hash tag: one Redis Cluster slot):

``count:<check>``  steps the check raised in (HINCRBY: a new leader counts on)
``last:<check>``   JSON ``{"rules", "error_type", "error", "ts"}``, the last one

The hash lives ``FAILURES_KEPT`` seconds after the last failure of any check:
a day without one forgets them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from webapp.anomalies.keys import AnalysisKeys

__all__ = [
    "FAILING_WITHIN",
    "FAILURES_KEPT",
    "CheckFailure",
    "error_line",
    "parse_failures",
    "read_failures",
    "record_failures",
]

log = logging.getLogger("portolan.anomalies.failures")

FAILURES_KEPT = 86400
# A check that raised this recently is failing now, not only earlier (the
# analyzer steps every second or so).
FAILING_WITHIN = 60.0
ERROR_CHARS = 300


def error_line(exc: BaseException, limit: int = ERROR_CHARS) -> str:
    """An exception as one line of at most ``limit`` characters.

    >>> error_line(KeyError("metrics"))
    "KeyError: 'metrics'"
    >>> error_line(ValueError("two\\n   lines")), error_line(RuntimeError())
    ('ValueError: two lines', 'RuntimeError')
    """
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """One rule check that raised in one step, and its error in one line."""

    check: str
    rules: tuple[str, ...]
    error_type: str
    error: str

    @classmethod
    def of(cls, check: str, rules, exc: BaseException) -> CheckFailure:
        return cls(check, tuple(sorted(rules)), type(exc).__name__, error_line(exc))


def record_failures(pipe, key: str, failures, now: float,
                    keep: int = FAILURES_KEPT) -> None:
    """Queue on ``pipe`` the counting of one step's failures under ``key``."""
    if not failures:
        return
    for f in failures:
        pipe.hincrby(key, f"count:{f.check}", 1)
        pipe.hset(key, f"last:{f.check}", json.dumps(
            {"rules": list(f.rules), "error_type": f.error_type, "error": f.error,
             "ts": now}, sort_keys=True))
    pipe.expire(key, keep)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def parse_failures(raw: dict, now: float) -> list[dict]:
    """The failures hash as read (bytes or str) to one entry per check, the
    latest first: ``{check, rules, count, error_type, error, last_failed_at
    (ISO 8601, UTC), seconds_ago, failing}``; malformed fields are skipped.

    >>> raw = {b"count:spikes": b"3", b"last:spikes": json.dumps(
    ...     {"rules": ["cpu_spike"], "error_type": "KeyError",
    ...      "error": "KeyError: 'cpu'", "ts": 100.0}).encode()}
    >>> [(f["check"], f["count"], f["error"], f["failing"])
    ...  for f in parse_failures(raw, now=130.0)]
    [('spikes', 3, "KeyError: 'cpu'", True)]
    """
    def text(value) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    fields = {text(k): text(v) for k, v in raw.items()}
    out = []
    for name, value in fields.items():
        kind, _, check = name.partition(":")
        if kind != "last" or not check:
            continue
        try:
            last = json.loads(value)
            ts = float(last["ts"])
            count = int(fields.get(f"count:{check}", "0"))
            rules = [str(r) for r in last.get("rules") or []]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("skipping malformed rule failure %r: %s", check, exc)
            continue
        ago = max(0.0, now - ts)
        out.append({
            "check": check, "rules": rules, "count": count,
            "error_type": str(last.get("error_type") or ""),
            "error": str(last.get("error") or ""),
            "last_failed_at": _iso(ts), "seconds_ago": round(ago, 3),
            "failing": ago <= FAILING_WITHIN,
        })
    return sorted(out, key=lambda f: (f["seconds_ago"], f["check"]))


def read_failures(client: redis.Redis, prefix: str = "portolan",
                  now: float | None = None) -> list[dict]:
    """The rule checks that raised lately (``parse_failures``); a Redis error
    is the caller's to report."""
    now = time.time() if now is None else now
    return parse_failures(client.hgetall(AnalysisKeys(prefix).failures), now)
