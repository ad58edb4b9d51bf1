"""The analysis on the map: statuses, reasons and likely causes merged onto a
topology graph, and read back from Redis for that.

The topology layer calls ``read_analysis`` then ``apply_analysis`` on the graph
it serves; both are cheap and never fail the map: a missing or malformed
analysis leaves the graph as it was.
"""

from __future__ import annotations

import json
import logging
import time
from typing import NamedTuple

import networkx as nx
import redis

from collector.redis_client import REDIS_ERRORS
from webapp.anomalies.keys import AnalysisKeys, edge_target
from webapp.anomalies.status import severity_rank

__all__ = [
    "ANALYSIS_FRESH",
    "NO_ANALYZER",
    "Verdict",
    "analysis_note",
    "apply_analysis",
    "apply_verdict",
    "cause_index",
    "edge_entry",
    "judge_edge",
    "judge_node",
    "owner_of",
    "read_analysis",
    "read_verdict",
    "unjudged_edge",
    "unjudged_node",
    "worse",
]

log = logging.getLogger("portolan.anomalies.merge")
# The analyzer publishes every second; silent this long, it is not running.
ANALYSIS_FRESH = 10.0
NO_ANALYZER = "status unknown: no analyzer is running"
_ORDER = ("unknown", "stopped", "ok", "warning", "critical")


def worse(a: str | None, b: str | None) -> str:
    """The more severe of two map statuses.

    >>> worse("stopped", "critical"), worse("warning", "ok"), worse(None, "ok")
    ('critical', 'warning', 'ok')
    """
    ranked = [s for s in (a, b) if s in _ORDER]
    return max(ranked, key=_ORDER.index) if ranked else "unknown"


def _owner(G: nx.DiGraph, node: str) -> str:
    """A service node's owner (at the service level edges end at services)."""
    return owner_of(node, G.nodes[node])


def owner_of(node: str, data: dict) -> str:
    """``_owner`` from the node's own attributes."""
    return data.get("parent") or node if data.get("type") == "service" else node


class Verdict(NamedTuple):
    """The analyzer's last word, and whether an analyzer is there to say it."""

    statuses: dict
    causes: list
    active: bool = True  # an analyzer published within ANALYSIS_FRESH seconds


def apply_verdict(G: nx.DiGraph, verdict: Verdict,
                  copy: bool = True) -> nx.DiGraph:
    """A copy of ``G`` with the verdict merged in: the analysis when an
    analyzer is active, else ``unknown`` where the map would claim ``ok``.
    ``copy=False``: ``G`` itself, changed (a graph just built for this, as
    the builder's are: copying 100,000 edges cost ~0.2 s of a rebuild).

    Without an analyzer the rates of one interval would be all there is to
    judge by, and a map that is green or red depending on which second it
    was read is worse than one that says it does not know.
    """
    if verdict.active:
        return apply_analysis(G, verdict.statuses, verdict.causes, judged=True,
                              copy=copy)
    H = G.copy() if copy else G
    for _n, data in H.nodes(data=True):
        unjudged_node(data)
    for _u, _v, data in H.edges(data=True):
        unjudged_edge(data)
    H.graph["analysis"] = analysis_note(False)
    return H


def unjudged_node(data: dict) -> None:
    """A node's attributes without an analyzer (``apply_verdict``), in place."""
    if data.get("status") in (None, "ok", "unknown"):
        data["status"] = "unknown"
        data["reasons"] = [NO_ANALYZER]
    else:
        data["reasons"] = list(data.get("reasons") or [])
    data["likely_cause"], data["cause_rank"] = False, None


def unjudged_edge(data: dict) -> None:
    """An edge's attributes without an analyzer, in place."""
    data["status"], data["reasons"] = "unknown", [NO_ANALYZER]


def analysis_note(active: bool) -> dict:
    """The graph's ``analysis`` attribute."""
    return {"active": True} if active else {"active": False, "reason": NO_ANALYZER}


def apply_analysis(G: nx.DiGraph, statuses: dict, causes: list,
                   judged: bool = False, copy: bool = True) -> nx.DiGraph:
    """A copy of ``G`` with the analysis merged in.

    Every node and edge gets ``reasons`` (a list, empty when fine) and a
    ``status`` that is the worse of its own and the analysis' (``judged``: an
    edge's is the analysis' alone, judged over its window, not the last
    interval's rates); every node gets ``notes`` (the analysis' remarks that
    leave it ok), ``likely_cause`` and ``cause_rank`` (None unless ranked),
    and a node in trouble (warning or critical) that a likely cause explains
    gets ``because_of``: ``{target, name, reason}`` of the best ranked one.
    ``copy=False`` changes ``G`` itself (``apply_verdict``).

    >>> G = nx.DiGraph([("a", "b")])
    >>> G.nodes["b"]["status"] = "stopped"
    >>> H = apply_analysis(G, {"b": {"status": "critical", "reasons": ["down"]}},
    ...                    [{"target": "b", "rank": 1}])
    >>> H.nodes["b"]["status"], H.nodes["b"]["reasons"], H.nodes["b"]["cause_rank"]
    ('critical', ['down'], 1)
    >>> H.edges["a", "b"]["reasons"], G.nodes["b"]["status"]
    ([], 'stopped')
    """
    H = G.copy() if copy else G
    ranks, because = cause_index(H.nodes(data=True), causes)
    for n, data in H.nodes(data=True):
        judge_node(n, data, statuses, ranks, because)
    for u, v, data in H.edges(data=True):
        judge_edge(data, edge_entry(statuses, u, v, H.nodes[u], H.nodes[v]),
                   judged)
    if judged:
        H.graph["analysis"] = analysis_note(True)
    return H


def cause_index(nodes, causes: list) -> tuple[dict, dict]:
    """``(ranks, because)`` of the likely ``causes`` over ``nodes`` ((id,
    attributes) pairs): target -> rank, and node -> the ``because_of`` of
    the best ranked cause that explains it."""
    causes = [c for c in causes or [] if isinstance(c, dict)]
    return ({c.get("target"): c.get("rank") for c in causes},
            _because_of(nodes, causes))


def judge_node(n: str, data: dict, statuses: dict, ranks: dict,
               because: dict) -> None:
    """A node's attributes with the analysis merged in (``apply_analysis``),
    in place."""
    entry = statuses.get(n) or {}
    status = entry.get("status")
    if severity_rank(status or "ok") > 0:
        data["status"] = worse(data.get("status"), status)
    data["reasons"] = list(entry.get("reasons") or [])
    data["notes"] = list(entry.get("notes") or [])
    data["likely_cause"] = n in ranks
    data["cause_rank"] = ranks.get(n)
    # Only a node in trouble is so because of something: a caller whose
    # edge went red is still ok (green) until its own warning's
    # hysteresis has passed.
    if n in because and severity_rank(data.get("status") or "ok") > 0:
        data["because_of"] = because[n]


def edge_entry(statuses: dict, u: str, v: str, u_data: dict, v_data: dict
               ) -> dict:
    """The analysis' entry for edge ``u -> v`` (at the service level, its
    owners' edge when it has none of its own)."""
    return (statuses.get(edge_target(u, v))
            or statuses.get(edge_target(owner_of(u, u_data), owner_of(v, v_data)))
            or {})


def judge_edge(data: dict, entry: dict, judged: bool) -> None:
    """An edge's attributes with its analysis ``entry`` merged in, in place."""
    status = entry.get("status")
    if judged:
        data["status"] = status if severity_rank(status or "ok") > 0 else "ok"
    elif severity_rank(status or "ok") > 0:
        data["status"] = worse(data.get("status"), status)
    data["reasons"] = list(entry.get("reasons") or [])


def _because_of(nodes, causes: list[dict]) -> dict[str, dict]:
    """Node -> the best ranked likely cause that explains it (a node at the
    service level through its owner); ``nodes``: (id, attributes) pairs."""
    by_node: dict[str, dict] = {}
    for c in sorted(causes, key=lambda c: c.get("rank") or 0):
        reasons = c.get("reasons") or []
        root = {"target": c.get("target"), "name": c.get("name"),
                "reason": str(reasons[0]) if reasons else ""}
        for n in c.get("explains") or []:
            by_node.setdefault(n, root)
    if not by_node:
        return {}
    out = {}
    for n, data in nodes:
        found = by_node.get(n) or by_node.get(owner_of(n, data))
        if found is not None and found["target"] != n:
            out[n] = found
    return out


def read_analysis(client: redis.Redis, prefix: str = "portolan") -> tuple[dict, list]:
    """``(statuses, causes)`` as the analyzer last wrote them; empty if none."""
    statuses, causes, _ = _read(client, prefix)
    return statuses, causes


def read_verdict(client: redis.Redis, prefix: str = "portolan",
                 now: float | None = None) -> Verdict:
    """The analyzer's statuses and causes, and whether an analyzer wrote them
    within ``ANALYSIS_FRESH`` seconds (else none is running: ``active`` is
    False and they are left out)."""
    now = time.time() if now is None else now
    statuses, causes, ts = _read(client, prefix)
    if ts is None or not now - ts <= ANALYSIS_FRESH:
        return Verdict({}, [], False)
    return Verdict(statuses, causes, True)


def _read(client: redis.Redis, prefix: str) -> tuple[dict, list, float | None]:
    """Statuses, causes and when they were published (None: unknown)."""
    keys = AnalysisKeys(prefix)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.status)
        pipe.get(keys.causes)
        raw_statuses, raw_causes = pipe.execute()
    except REDIS_ERRORS as exc:
        log.warning("cannot read the anomaly analysis: %s", exc)
        return {}, [], None
    statuses = {}
    for target, text in raw_statuses.items():
        try:
            entry = json.loads(text)
            if isinstance(entry, dict):
                statuses[target.decode()] = entry
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("skipping malformed anomaly status %r: %s", target, exc)
    causes, ts = [], None
    if raw_causes:
        try:
            published = json.loads(raw_causes)
            causes, ts = published.get("causes", []), published.get("ts")
        except (ValueError, AttributeError) as exc:
            log.warning("skipping malformed likely-cause ranking: %s", exc)
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        ts = None
    return statuses, causes if isinstance(causes, list) else [], ts
