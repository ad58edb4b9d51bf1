"""The anomaly event log: a capped Redis stream of anomalies starting,
changing severity and ending, for the panel and the time slider.

Each entry's fields: ``kind`` (started, changed, ended), ``target``, ``name``,
``rule``, ``severity``, ``reason`` and ``ts`` (unix time of the analysis step).
"""

from __future__ import annotations

import logging

import redis

from collector.redis_client import REDIS_ERRORS
from webapp.anomalies.keys import AnalysisKeys
from webapp.anomalies.status import AnomalyEvent

__all__ = ["append_events", "read_events"]

log = logging.getLogger("portolan.anomalies.events")


def _fields(event: AnomalyEvent, names: dict[str, str]) -> dict[str, str]:
    return {
        "kind": event.kind, "target": event.target,
        "name": names.get(event.target, event.target), "rule": event.rule,
        "severity": event.severity, "reason": event.reason, "ts": repr(event.ts),
    }


def append_events(
    pipe, keys: AnalysisKeys, events: list[AnomalyEvent], maxlen: int,
    names: dict[str, str] | None = None,
) -> None:
    """Queue XADDs of ``events`` on a pipeline (or client), capping the stream."""
    for event in events:
        pipe.xadd(keys.events, _fields(event, names or {}), maxlen=maxlen,
                  approximate=False)


def read_events(
    client: redis.Redis, prefix: str = "portolan", since: float | None = None,
    until: float | None = None, target: str | None = None, count: int = 200,
) -> list[dict]:
    """Events between two unix times, oldest first, optionally of one target.

    Stream ids are Redis' own clock in milliseconds, which ``since``/``until``
    select on; each event's ``ts`` is the analysis step's time.
    """
    keys = AnalysisKeys(prefix)
    low = "-" if since is None else str(int(since * 1000))
    high = "+" if until is None else str(int(until * 1000))
    try:
        rows = client.xrevrange(keys.events, high, low, count=count)
    except REDIS_ERRORS as exc:
        log.warning("cannot read the anomaly events: %s", exc)
        return []
    out = []
    for stream_id, fields in reversed(rows):
        entry = {k.decode(): v.decode() for k, v in fields.items()}
        if target is not None and entry.get("target") != target:
            continue
        try:
            entry["ts"] = float(entry.get("ts", "0"))
        except ValueError:
            entry["ts"] = 0.0
        entry["id"] = stream_id.decode()
        out.append(entry)
    return out
