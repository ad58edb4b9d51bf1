"""Likely cause: rank the red nodes by how well each explains the others.

Candidates are nodes in trouble of their own (an anomaly of their own, or a
critical status from Docker) and the servers of failing edges. A candidate
ranks higher when

1. its own dependencies (the servers it calls) are healthy: the trouble starts
   there rather than further down;
2. it explains more red callers: nodes and edges upstream of it, reached
   backwards over red edges and red nodes;
3. its trouble is of its own (stopped, OOM killed, restart loop) rather than
   only its clients' failures; then the more severe.
"""

from __future__ import annotations

import networkx as nx

from webapp.anomalies.keys import edge_target
from webapp.anomalies.rules import RULES
from webapp.anomalies.status import severity_rank

__all__ = ["rank_causes"]


def rank_causes(G: nx.DiGraph, statuses: dict[str, dict],
                limit: int = 5) -> list[dict]:
    """The likely causes, best first, each with a plain-language ``why``.

    ``statuses`` maps target ids (nodes and ``edge_target`` edges) to entries
    with ``status`` (or ``own_status``) and ``reasons``, as ``status.roll_up``
    makes them.

    >>> G = nx.DiGraph([("container:h:api", "container:h:db")])
    >>> G.nodes["container:h:api"].update(name="api", type="container")
    >>> G.nodes["container:h:db"].update(name="db", type="container")
    >>> st = {"container:h:db": {"status": "critical", "reasons": ["exited"],
    ...                          "anomalies": [{"rule": "service_down"}]},
    ...       "container:h:api>container:h:db": {"status": "critical",
    ...                                          "reasons": ["refused"]}}
    >>> [c["name"] for c in rank_causes(G, st)]
    ['db']
    """

    def own(target: str) -> int:
        entry = statuses.get(target) or {}
        return severity_rank(entry.get("own_status", entry.get("status", "ok")))

    def docker_critical(n: str) -> bool:
        # A host's status in G is rolled up from its containers: not its own.
        data = G.nodes[n]
        return data.get("type") != "host" and data.get("status") == "critical"

    def red_node(n: str) -> bool:
        return own(n) > 0 or docker_critical(n)

    def red_edge(u: str, v: str) -> bool:
        # An edge red only through its client's own fault (a port nothing
        # serves) says nothing against its server.
        entry = statuses.get(edge_target(u, v)) or {}
        rules = [a.get("rule") for a in entry.get("anomalies") or []]
        if rules and all(r in RULES and RULES[r].caller_at_fault for r in rules):
            return False
        return own(edge_target(u, v)) > 0

    candidates = {n for n in G if G.nodes[n].get("type") != "host" and red_node(n)}
    candidates |= {v for u, v in G.edges if red_edge(u, v)}
    # A host is a candidate only for trouble of its own (memory, load, disk).
    candidates |= {n for n in G if G.nodes[n].get("type") == "host" and own(n) > 0}

    ranked = []
    for c in candidates:
        data = G.nodes[c]
        bad_deps = sorted(s for s in G.successors(c)
                          if s != c and (red_edge(c, s) or red_node(s)))
        explained = _explained(G, c, red_node, red_edge)
        if data.get("type") == "host" and own(c) > 0:
            # Its containers' troubles are its own doing only if it is in
            # trouble itself. A host that is here only as the server of a red
            # edge (a refused published port) explains its callers, not every
            # exited container it holds, which real hosts keep by the dozen.
            explained |= {n for n in G if G.nodes[n].get("parent") == c
                          and red_node(n)}
        entry = statuses.get(c) or {}
        rules = {a.get("rule") for a in entry.get("anomalies", [])}
        own_rule = any(RULES[r].intrinsic for r in rules if r in RULES)
        intrinsic = own_rule or docker_critical(c)
        severity = max(own(c), 2 if docker_critical(c) else 0)
        key = (not bad_deps, len(explained), intrinsic, severity)
        ranked.append((key, c, bad_deps, explained, entry))
    ranked.sort(key=lambda r: (tuple(-int(x) for x in r[0]), r[1]))

    out = []
    for rank, (key, c, bad_deps, explained, entry) in enumerate(ranked[:limit], 1):
        name = G.nodes[c].get("name", c)
        reasons = list(entry.get("reasons", []))
        why = [f"{name} is in trouble"
               + (f": {'; '.join(reasons[:3])}" if reasons else "")]
        if bad_deps:
            why.append("but its own dependencies are failing too: "
                       + ", ".join(_names(G, bad_deps)))
        else:
            why.append("its own dependencies are healthy")
        if explained:
            why.append(f"it explains {len(explained)} failing caller(s): "
                       + ", ".join(_names(G, sorted(explained))[:5]))
        out.append({
            "target": c, "name": name, "type": G.nodes[c].get("type"),
            "rank": rank, "status": entry.get("status")
            or ("critical" if key[3] == 2 else "warning"),
            "reasons": reasons, "explains": sorted(explained),
            "dependencies_healthy": not bad_deps, "why": "; ".join(why),
        })
    return out


def _explained(G: nx.DiGraph, c: str, red_node, red_edge) -> set[str]:
    """Red callers of ``c``, transitively over red edges and red nodes."""
    explained: set[str] = set()
    frontier = [c]
    while frontier:
        x = frontier.pop()
        for p in G.predecessors(x):
            if p == c or p in explained:
                continue
            if red_edge(p, x) or red_node(p):
                explained.add(p)
                frontier.append(p)
    return explained


def _names(G: nx.DiGraph, nodes) -> list[str]:
    return [str(G.nodes[n].get("name", n)) for n in nodes]
