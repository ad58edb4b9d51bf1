"""The analysis as it was: statuses, reasons and likely causes kept over time.

A past view shows the statuses the analyzer published then, not today's rules
run again on old data. The analyzer writes an entry (compressed JSON
``{"ts", "statuses", "causes"}``) into one sorted set beside its status keys:
at once when a target's status or the ranking changes, at most every
``step`` seconds when only the reasons' wording does, and ``heartbeat``
seconds after the last entry otherwise, so a reader can tell "still the same"
from "no analyzer then". Entries older than the history window go; a
steady fleet costs one entry a minute.
"""

from __future__ import annotations

import logging

import redis

from collector.redis_client import REDIS_ERRORS
from collector.schema import SchemaError, decode_snapshot, encode_snapshot
from webapp.anomalies.keys import AnalysisKeys
from webapp.anomalies.merge import ANALYSIS_FRESH, Verdict

__all__ = ["StatusHistory", "read_verdict_at"]

log = logging.getLogger("portolan.anomalies.history")
HEARTBEAT = 60.0


def _shape(statuses: dict, causes: list) -> tuple:
    """What a change is: each target's status, and the ranking's targets."""
    return (tuple(sorted((t, e.get("status")) for t, e in statuses.items())),
            tuple(c.get("target") for c in causes if isinstance(c, dict)))


class StatusHistory:
    """Writes the analysis' history (one analyzer at a time holds the lease)."""

    def __init__(self, client: redis.Redis, prefix: str = "portolan",
                 step: float = 5.0, window: float = 3600.0,
                 heartbeat: float = HEARTBEAT):
        self.client = client
        self.key = AnalysisKeys(prefix).history
        self.step, self.window, self.heartbeat = step, window, heartbeat
        self._last: tuple | None = None  # (ts, shape, statuses, causes) written

    def due(self, now: float, statuses: dict, causes: list) -> bool:
        """Whether this step's analysis makes a new entry."""
        if self._last is None:
            return True
        ts, shape, old_statuses, old_causes = self._last
        if now - ts >= self.heartbeat or shape != _shape(statuses, causes):
            return True
        return now - ts >= self.step and (old_statuses, old_causes) != (
            statuses, causes)

    def record(self, now: float, statuses: dict, causes: list,
               pipe=None) -> bool:
        """Add an entry if one is due (into ``pipe`` when given, e.g. the
        analyzer's own transaction); True if it did."""
        if not self.due(now, statuses, causes):
            return False
        target = pipe if pipe is not None else self.client.pipeline(
            transaction=False)
        blob = encode_snapshot({"ts": now, "statuses": statuses, "causes": causes})
        target.zadd(self.key, {blob: now})
        target.zremrangebyscore(self.key, "-inf", now - self.window)
        target.expire(self.key, int(self.window) + 60)
        if pipe is None:
            target.execute()
        self._last = (now, _shape(statuses, causes), statuses, causes)
        return True


def read_verdict_at(client: redis.Redis, at: float, prefix: str = "portolan",
                    heartbeat: float = HEARTBEAT) -> Verdict:
    """The analysis as published at unix time ``at``: its latest entry then,
    or an inactive verdict when no analyzer had written within a heartbeat."""
    key = AnalysisKeys(prefix).history
    try:
        rows = client.zrevrangebyscore(key, at, at - heartbeat - ANALYSIS_FRESH,
                                       start=0, num=1)
    except REDIS_ERRORS as exc:
        log.warning("cannot read the analysis history: %s", exc)
        return Verdict({}, [], False)
    if not rows:
        return Verdict({}, [], False)
    try:
        entry = decode_snapshot(rows[0])
    except SchemaError as exc:
        log.warning("skipping a malformed analysis history entry: %s", exc)
        return Verdict({}, [], False)
    statuses = entry.get("statuses")
    causes = entry.get("causes")
    if not isinstance(statuses, dict):
        statuses = {}
    return Verdict({t: e for t, e in statuses.items() if isinstance(e, dict)},
                   causes if isinstance(causes, list) else [], True)
