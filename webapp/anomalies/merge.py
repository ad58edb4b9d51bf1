"""The analysis on the map: statuses, reasons and likely causes merged onto a
topology graph, and read back from Redis for that.

The topology layer calls ``read_analysis`` then ``apply_analysis`` on the graph
it serves; both are cheap and never fail the map: a missing or malformed
analysis leaves the graph as it was.
"""

from __future__ import annotations

import json
import logging

import networkx as nx
import redis

from collector.redis_client import REDIS_ERRORS
from webapp.anomalies.keys import AnalysisKeys, edge_target
from webapp.anomalies.status import severity_rank

__all__ = ["apply_analysis", "read_analysis", "worse"]

log = logging.getLogger("portolan.anomalies.merge")
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
    data = G.nodes[node]
    return data.get("parent") or node if data.get("type") == "service" else node


def apply_analysis(G: nx.DiGraph, statuses: dict, causes: list) -> nx.DiGraph:
    """A copy of ``G`` with the analysis merged in.

    Every node and edge gets ``reasons`` (a list, empty when fine) and a
    ``status`` that is the worse of its own and the analysis'; every node gets
    ``likely_cause`` and ``cause_rank`` (None unless ranked).

    >>> G = nx.DiGraph([("a", "b")])
    >>> G.nodes["b"]["status"] = "stopped"
    >>> H = apply_analysis(G, {"b": {"status": "critical", "reasons": ["down"]}},
    ...                    [{"target": "b", "rank": 1}])
    >>> H.nodes["b"]["status"], H.nodes["b"]["reasons"], H.nodes["b"]["cause_rank"]
    ('critical', ['down'], 1)
    >>> H.edges["a", "b"]["reasons"], G.nodes["b"]["status"]
    ([], 'stopped')
    """
    H = G.copy()
    ranks = {c.get("target"): c.get("rank") for c in causes or []
             if isinstance(c, dict)}
    for n, data in H.nodes(data=True):
        entry = statuses.get(n) or {}
        status = entry.get("status")
        if severity_rank(status or "ok") > 0:
            data["status"] = worse(data.get("status"), status)
        data["reasons"] = list(entry.get("reasons") or [])
        data["likely_cause"] = n in ranks
        data["cause_rank"] = ranks.get(n)
    for u, v, data in H.edges(data=True):
        entry = (statuses.get(edge_target(u, v))
                 or statuses.get(edge_target(_owner(H, u), _owner(H, v))) or {})
        status = entry.get("status")
        if severity_rank(status or "ok") > 0:
            data["status"] = worse(data.get("status"), status)
        data["reasons"] = list(entry.get("reasons") or [])
    return H


def read_analysis(client: redis.Redis, prefix: str = "portolan") -> tuple[dict, list]:
    """``(statuses, causes)`` as the analyzer last wrote them; empty if none."""
    keys = AnalysisKeys(prefix)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.status)
        pipe.get(keys.causes)
        raw_statuses, raw_causes = pipe.execute()
    except REDIS_ERRORS as exc:
        log.warning("cannot read the anomaly analysis: %s", exc)
        return {}, []
    statuses = {}
    for target, text in raw_statuses.items():
        try:
            entry = json.loads(text)
            if isinstance(entry, dict):
                statuses[target.decode()] = entry
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("skipping malformed anomaly status %r: %s", target, exc)
    causes = []
    if raw_causes:
        try:
            causes = json.loads(raw_causes).get("causes", [])
        except (ValueError, AttributeError) as exc:
            log.warning("skipping malformed likely-cause ranking: %s", exc)
    return statuses, causes if isinstance(causes, list) else []
