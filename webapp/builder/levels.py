"""The three levels' live graphs as node-link dicts, rebuilt or updated in place.

``build_levels`` is the pure, full build (``webapp.topology.graph``) of all
three levels from one state, with the analysis and the silent collectors
applied; it also records which flows make up each edge. ``LevelView`` keeps
one level between updates: after a full build it diffs against what it held;
when only flow counters or node metrics changed it recomputes just the edges
of those flows and those nodes, so a typical second costs its changes, not
the fleet; when only the analyzer's verdict changed it judges every node and
edge again in place (``reapply``), without building anything.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from itertools import filterfalse

import networkx as nx

from collector.schema import COUNTERS, RATE_COUNTERS
from webapp.anomalies.merge import (
    Verdict,
    analysis_note,
    apply_verdict,
    cause_index,
    edge_entry,
    judge_edge,
    judge_node,
    unjudged_edge,
    unjudged_node,
    worse,
)
from webapp.anomalies.status import severity_rank
from webapp.maps.diff import changed_keys, empty_diff, graph_diff, node_update
from webapp.topology.graph import (
    EDGE_ATTRS,
    client_view,
    coarsen,
    service_graph,
)
from webapp.topology.store import TopologyState

__all__ = ["LevelView", "build_levels", "mark_silent"]

LEVELS = ("service", "container", "host")
SILENT_STATUS = "unknown"


@dataclass(slots=True)
class LevelGraph:
    """One level as the map receives it, with each edge's flows."""

    rest: dict  # node-link keys other than nodes and links
    nodes: dict[str, dict]
    links: dict[tuple[str, str], dict]
    # (source, target) -> [((host id, FlowKey), turned)]
    members: dict[tuple[str, str], list] = field(default_factory=dict)
    # (host id, FlowKey) -> (source, target)
    edge_of: dict = field(default_factory=dict)
    # node id -> its attributes that the verdict and the silent hosts set,
    # as they were before (``LevelView.reapply`` starts from them)
    base: dict[str, dict] = field(default_factory=dict)

    def payload(self) -> dict:
        return {**self.rest, "nodes": list(self.nodes.values()),
                "links": list(self.links.values())}


def _roll_up(G: nx.DiGraph) -> nx.DiGraph:
    # As graph.build_graph: a host shows its worst child.
    for _n, data in G.nodes(data=True):
        parent = data.get("parent")
        if parent in G and G.nodes[parent].get("type") == "host":
            G.nodes[parent]["status"] = worse(G.nodes[parent]["status"],
                                              data.get("status"))
    return G


def _level_graph(G: nx.DiGraph, edge_of: dict, base: dict) -> LevelGraph:
    data = nx.node_link_data(G, edges="links")
    nodes = {n["id"]: n for n in data.pop("nodes")}
    links = {(e["source"], e["target"]): e for e in data.pop("links")}
    members: dict = {}
    for flow, (u, v, turned) in edge_of.items():
        members.setdefault((u, v), []).append((flow, turned))
    return LevelGraph(data, nodes, links, members,
                      {flow: (u, v) for flow, (u, v, _) in edge_of.items()}, base)


# What ``apply_verdict`` and ``mark_silent`` set on a node.
_JUDGED_KEYS = ("status", "reasons", "notes", "likely_cause", "cause_rank",
                "because_of", "reporting", "last_report")


def _unjudged(G: nx.DiGraph) -> dict[str, dict]:
    """Each node's ``_JUDGED_KEYS`` before the verdict is applied."""
    return {n: {k: data[k] for k in _JUDGED_KEYS if k in data}
            for n, data in G.nodes(data=True)}


def mark_silent(G: nx.DiGraph, silent: dict[str, float]) -> None:
    """Grey out the nodes of hosts whose collector stopped reporting.

    ``silent`` maps host id -> time of its last report; the host node says
    since when (a fixed time, so the map is not redrawn every second).
    """
    if not silent:
        return
    for _n, data in G.nodes(data=True):
        _mark_node_silent(data, silent)


def _mark_node_silent(data: dict, silent: dict[str, float]) -> None:
    """``mark_silent`` for one node's attributes, in place."""
    host = data.get("id", "").partition(":")[2] if data.get("type") == "host" \
        else data.get("host")
    if host is None or host not in silent:
        return
    since = datetime.datetime.fromtimestamp(silent[host], datetime.UTC)
    data["status"] = SILENT_STATUS
    data["reporting"] = False
    if data.get("type") == "host":
        data["last_report"] = silent[host]
        data["reasons"] = [*data.get("reasons", []),
                           f"no report from its collector since "
                           f"{since:%Y-%m-%d %H:%M:%S} UTC"]


def build_levels(state: TopologyState, verdict: Verdict,
                 silent: dict[str, float], levels=LEVELS) -> dict[str, LevelGraph]:
    """The ``levels`` from scratch (the container graph is built once for the
    container and host levels)."""
    out = {}
    graphs = {}
    if "service" in levels:
        edge_of: dict = {}
        G = _roll_up(service_graph(state, edges_of_flows=edge_of))
        graphs["service"] = (G, edge_of)
    if "container" in levels or "host" in levels:
        edge_of_c: dict = {}
        C = service_graph(state, services=False, edges_of_flows=edge_of_c)
        if "host" in levels:
            H = coarsen(C, "host")
            host_of = {n: _host_ancestor(C, n) for n in C}
            graphs["host"] = (H, {f: (host_of[u], host_of[v], t)
                                  for f, (u, v, t) in edge_of_c.items()})
        if "container" in levels:
            graphs["container"] = (_roll_up(C), edge_of_c)
    for level, (graph, flows) in graphs.items():
        base = _unjudged(graph)
        graph = apply_verdict(graph, verdict, copy=False)  # built for this alone
        mark_silent(graph, silent)
        out[level] = _level_graph(graph, flows, base)
    return out


def _host_ancestor(G: nx.DiGraph, node: str) -> str:
    """The node a host-level coarsening merges ``node`` into."""
    seen = set()
    while G.nodes[node].get("type") not in ("host", "external"):
        parent = G.nodes[node].get("parent")
        if parent is None or parent not in G or node in seen:
            return node
        seen.add(node)
        node = parent
    return node


class LevelView:
    """One level's current graph and the diffs that keep a copy of it current."""

    def __init__(self, level: str, payload: dict | None = None):
        self.level = level
        self.graph: LevelGraph | None = None
        self.loaded = payload  # the stored graph a takeover continues from

    def replace(self, graph: LevelGraph) -> dict | None:
        """Take a fully built graph; the diff from the previous one (None: no
        previous graph to diff against)."""
        old = self.graph.payload() if self.graph is not None else self.loaded
        self.graph, self.loaded = graph, None
        return None if old is None else graph_diff(old, graph.payload(),
                                                   partial=True)

    def reapply(self, verdict: Verdict, silent: dict[str, float]) -> dict:
        """The partial diff of a new verdict: every node and edge judged again
        as the build judges them (``apply_verdict``, ``mark_silent``), from
        the attributes it had before the last build's verdict.

        The analyzer's word changes whenever a reason's figure moves ("memory
        near its limit: 93 %"), which at 10,000 containers is most seconds:
        a full build each time cost ~2 s of CPU, this ~0.1 s.
        """
        g = self.graph
        diff = empty_diff()
        active = verdict.active
        if active:
            ranks, because = cause_index(g.nodes.items(), verdict.causes)
        for n, node in g.nodes.items():
            new = {k: v for k, v in node.items() if k not in _JUDGED_KEYS}
            new.update(g.base.get(n, _NONE))
            if active:
                judge_node(n, new, verdict.statuses, ranks, because)
            else:
                unjudged_node(new)
            _mark_node_silent(new, silent)
            if new != node:
                g.nodes[n] = new
                update = changed_keys(node, new)
                if update is None:  # a key went away (``because_of``)
                    diff["changed_nodes"].append(new)
                else:
                    node_update(diff, node, update)
        for (u, v), link in g.links.items():
            new = {"status": link.get("status"), "reasons": link.get("reasons")}
            if active:
                judge_edge(new, edge_entry(verdict.statuses, u, v,
                                           g.nodes.get(u, _NONE),
                                           g.nodes.get(v, _NONE)), True)
            else:
                unjudged_edge(new)
            changes = dict(filterfalse(link.items().__contains__, new.items()))
            if changes:
                link.update(changes)
                diff["updated_links"].append({"source": link["source"],
                                              "target": link["target"], **changes})
        g.rest["analysis"] = analysis_note(active)
        return diff

    def update(self, state: TopologyState, flows, nodes, verdict: Verdict,
               node_sources: dict[str, dict]) -> dict:
        """The partial diff of changed flows' edges and of nodes whose metrics
        changed: each carries only the keys whose values changed."""
        g = self.graph
        diff = empty_diff()
        edge_of, links, members = g.edge_of, g.links, g.members
        edges = set(map(edge_of.get, flows))
        edges.discard(None)
        updated = diff["updated_links"]
        status = None if verdict.active else _edge_status(g, None, verdict)
        # In the graph's own order, filtered in C (sorting 50,000 edges' ids
        # cost more than the whole pass over the graph's edges).
        for edge in filter(edges.__contains__, links):
            link = links[edge]
            values = _edge_sums(state, members.get(edge, ()))
            # The attributes no flow has any more are 0 (a rate without
            # traffic); only those that were not are compared, in C.
            zero = _ATTRS - values.keys()
            for name in filter(link.get, zero):
                values[name] = 0
            if not link.keys() >= zero:
                values.update(dict.fromkeys(zero - link.keys(), 0))
            values["status"] = status or _edge_status(g, edge, verdict)
            # As ``changed_keys(link, {**link, **values})``: only what moved
            # (filtered in C: at 50,000 edges a Python loop over each edge's
            # keys was a third of the update).
            changes = dict(filterfalse(link.items().__contains__, values.items()))
            if changes:
                link.update(changes)  # the view's own dict, nobody else's
                updated.append({"source": link["source"],
                                "target": link["target"], **changes})
        for node_id in sorted(nodes):
            node = g.nodes.get(node_id)
            source = node_sources.get(node_id)
            if node is None or source is None:
                continue
            # As ``changed_keys(node, {**node, **source})``: only the
            # source's keys can differ (when metrics move, every node of a
            # reporting host comes here each second).
            changes = dict(filterfalse(node.items().__contains__, source.items()))
            if changes:
                g.nodes[node_id] = {**node, **changes}
                node_update(diff, node, {"id": node["id"], **changes})
        return diff


# A flow's counter and rate names as its edge sums them: as recorded, or (a
# server's own record, ``turned``) as its client sees them.
_AS_RECORDED = ({name: name for name in COUNTERS},
                {name: f"{name}_per_s" for name in RATE_COUNTERS})
_TURNED = tuple({name: client_view({edge: 0}).popitem()[0]
                 for name, edge in names.items()} for names in _AS_RECORDED)


def _edge_sums(state: TopologyState, members) -> dict:
    """An edge's counters and rates that its flows have: their sum, as the
    build adds (from 0, in the same order, so float sums come out equal);
    the others, 0 in the build, are left out (most of the 24, most seconds)."""
    flows, rates = state.flows, state.rates
    if len(members) == 1:  # most edges: one flow, nothing to add up
        ((flow, turned),) = members
        counter_names, rate_names = _TURNED if turned else _AS_RECORDED
        counts = flows.get(flow, _NONE)
        # As recorded, a counter's edge name is its own (_AS_RECORDED).
        total = ({counter_names[n]: v for n, v in counts.items()} if turned
                 else dict(counts))
        for name, rate in rates.get(flow, _NONE).items():
            total[rate_names[name]] = rate
        return total
    total: dict = {}
    get = total.get
    for flow, turned in members:
        counter_names, rate_names = _TURNED if turned else _AS_RECORDED
        for name, value in flows.get(flow, _NONE).items():
            name = counter_names[name]
            total[name] = get(name, 0) + value
        for name, rate in rates.get(flow, _NONE).items():
            name = rate_names[name]
            total[name] = get(name, 0) + rate
    return total


_NONE: dict = {}
_ATTRS = frozenset(EDGE_ATTRS)


def _edge_status(g: LevelGraph, edge, verdict: Verdict) -> str:
    """As the build (``apply_verdict``): the analysis' alone, judged over its
    window; unknown without an analyzer."""
    if not verdict.active:
        return "unknown"
    u, v = edge
    status = edge_entry(verdict.statuses, u, v, g.nodes.get(u, _NONE),
                        g.nodes.get(v, _NONE)).get("status") or "ok"
    return status if severity_rank(status) > 0 else "ok"
