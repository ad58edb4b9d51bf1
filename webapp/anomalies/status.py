"""Status with hysteresis: findings become anomalies, anomalies become statuses.

Every ``(target, rule)`` pair is a signal. A hard finding raises its anomaly at
once; a soft one after ``raise_after`` consecutive evaluations. An active
anomaly clears only after ``clear_after`` consecutive evaluations without its
finding, and its severity drops only after as many evaluations at the lower
severity (it rises at once). So a signal that comes and goes every other
evaluation changes nothing, and nothing flaps.

A target's own status is the worst severity of its active anomalies; hosts
(and any other parent node) also show the worst status of their children.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from webapp.anomalies.keys import parse_target
from webapp.anomalies.rules import Finding

__all__ = [
    "AnomalyEvent",
    "Signal",
    "StatusTracker",
    "roll_up",
    "severity_rank",
    "target_name",
]

_RANK = {"ok": 0, "warning": 1, "critical": 2}


def severity_rank(status: str) -> int:
    """0 for ok (or anything unknown), 1 for warning, 2 for critical."""
    return _RANK.get(status, 0)


@dataclass(slots=True)
class Signal:
    """The hysteresis state of one ``(target, rule)`` pair."""

    target: str
    rule: str
    active: bool = False
    severity: str = "warning"
    reason: str = ""
    since: float = 0.0  # when the anomaly was raised
    hits: int = 0  # consecutive evaluations with a finding
    misses: int = 0  # consecutive evaluations without one
    lower: int = 0  # consecutive evaluations at a lower severity
    adopted: bool = False  # seeded from another analyzer, not yet seen here

    def as_dict(self) -> dict:
        return {"rule": self.rule, "severity": self.severity,
                "reason": self.reason, "since": self.since}


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """An anomaly ``started``, ``changed`` (severity) or ``ended``."""

    kind: str
    target: str
    rule: str
    severity: str
    reason: str
    ts: float


class StatusTracker:
    """Turns each evaluation's findings into anomalies, with hysteresis."""

    def __init__(self, raise_after: int = 2, clear_after: int = 5):
        if raise_after < 1 or clear_after < 1:
            raise ValueError("raise_after and clear_after must be at least 1")
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.signals: dict[tuple[str, str], Signal] = {}

    def seed(self, target: str, anomaly: dict) -> None:
        """Adopt an anomaly another analyzer raised, so it is not raised twice."""
        rule = str(anomaly.get("rule", ""))
        self.signals[(target, rule)] = Signal(
            target, rule, active=True,
            severity=str(anomaly.get("severity", "warning")),
            reason=str(anomaly.get("reason", "")),
            since=float(anomaly.get("since", 0.0)), hits=self.raise_after,
            adopted=True,
        )

    def update(self, findings: list[Finding], now: float,
               hold=frozenset()) -> list[AnomalyEvent]:
        """Feed one evaluation's findings; return what started, changed, ended.

        Signals in ``hold`` could not be judged this time: a missing finding
        does not count against them.
        """
        events: list[AnomalyEvent] = []
        current = {(f.target, f.rule): f for f in findings}
        for key, f in current.items():
            s = self.signals.get(key)
            if s is None:
                s = self.signals[key] = Signal(f.target, f.rule)
            s.hits += 1
            s.misses = 0
            s.adopted = False
            if not s.active:
                if f.hard or s.hits >= self.raise_after:
                    s.active, s.severity, s.reason, s.since = (
                        True, f.severity, f.reason, now)
                    s.lower = 0
                    events.append(self._event("started", s, now))
                continue
            s.reason = f.reason if f.severity == s.severity else s.reason
            if severity_rank(f.severity) > severity_rank(s.severity):
                s.severity, s.reason, s.lower = f.severity, f.reason, 0
                events.append(self._event("changed", s, now))
            elif severity_rank(f.severity) < severity_rank(s.severity):
                s.lower += 1
                if s.lower >= self.clear_after:
                    s.severity, s.reason, s.lower = f.severity, f.reason, 0
                    events.append(self._event("changed", s, now))
            else:
                s.lower = 0
        for key in [k for k in self.signals if k not in current and k not in hold]:
            s = self.signals[key]
            s.hits = 0
            s.misses += 1
            if not s.active:
                del self.signals[key]
            elif s.misses >= self.clear_after:
                events.append(self._event("ended", s, now))
                del self.signals[key]
        return events

    @staticmethod
    def _event(kind: str, s: Signal, now: float) -> AnomalyEvent:
        return AnomalyEvent(kind, s.target, s.rule, s.severity, s.reason, now)

    def active(self) -> list[Signal]:
        return [s for s in self.signals.values() if s.active]

    def adopted_keys(self) -> list[tuple[str, str]]:
        return [k for k, s in self.signals.items() if s.adopted]

    def active_keys(self) -> frozenset:
        """Active anomalies (notes, which leave a target ok, are not)."""
        return frozenset(k for k, s in self.signals.items()
                         if s.active and s.severity != "note")

    def own_statuses(self) -> dict[str, dict]:
        """Target -> ``{status, reasons, notes, anomalies}`` for targets not ok
        or with a note (a note is listed, never a status)."""
        out: dict[str, dict] = {}
        for s in sorted(self.active(), key=lambda s: (-severity_rank(s.severity),
                                                      s.since, s.rule)):
            entry = out.setdefault(s.target, {"status": "ok", "reasons": [],
                                              "anomalies": []})
            if severity_rank(s.severity) > severity_rank(entry["status"]):
                entry["status"] = s.severity
            if s.severity == "note":
                entry.setdefault("notes", []).append(s.reason)
            else:
                entry["reasons"].append(s.reason)
            entry["anomalies"].append(s.as_dict())
        return out


def target_name(G: nx.DiGraph, target: str) -> str:
    """A target's name for people: the node's name, or ``client -> server``."""
    u, v = parse_target(target)

    def name(n: str) -> str:
        return str(G.nodes[n].get("name") or n) if n in G else n

    return name(u) if v is None else f"{name(u)} -> {name(v)}"


def roll_up(G: nx.DiGraph, own: dict[str, dict], limit: int = 5) -> dict[str, dict]:
    """Statuses of every target not ok, with parents showing their children.

    Each entry is ``{status, own_status, reasons, anomalies, name, type}``;
    ``reasons`` of a parent list its own first, then its children's, prefixed
    with their name. ``limit`` caps the children's reasons per parent.

    >>> G = nx.DiGraph()
    >>> G.add_node("host:h", type="host", name="h", parent=None)
    >>> G.add_node("container:h:a", type="container", name="a", parent="host:h")
    >>> own = {"container:h:a": {"status": "critical", "reasons": ["OOM killed"],
    ...                          "anomalies": []}}
    >>> roll_up(G, own)["host:h"]["reasons"]
    ['a: OOM killed']
    """
    out: dict[str, dict] = {}
    for target, entry in own.items():
        u, v = parse_target(target)
        node = G.nodes[u] if v is None and u in G else {}
        out[target] = {**entry, "own_status": entry["status"],
                       "reasons": list(entry["reasons"]),
                       "name": target_name(G, target),
                       "type": node.get("type", "edge" if v else "node")}
    for target, entry in own.items():
        u, v = parse_target(target)
        if v is not None or u not in G or severity_rank(entry["status"]) == 0:
            continue
        seen = {u}
        parent = G.nodes[u].get("parent")
        while parent is not None and parent in G and parent not in seen:
            seen.add(parent)
            p = out.setdefault(parent, {
                "status": "ok", "own_status": "ok", "reasons": [], "anomalies": [],
                "name": G.nodes[parent].get("name", parent),
                "type": G.nodes[parent].get("type", "node"), "children": 0,
            })
            if severity_rank(entry["status"]) > severity_rank(p["status"]):
                p["status"] = entry["status"]
            p["children"] = p.get("children", 0) + 1
            if p["children"] <= limit:
                name = G.nodes[u].get("name", u)
                p["reasons"].extend(f"{name}: {r}" for r in entry["reasons"])
            elif p["children"] == limit + 1:
                p["reasons"].append("and more containers")
            parent = G.nodes[parent].get("parent")
    for entry in out.values():
        entry.pop("children", None)
    return out
