"""The map's three zoom levels, as pure functions over NetworkX graphs.

``service_graph`` builds the finest level from a TopologyState; ``coarsen``
merges nodes into their parents (services into containers, containers into
hosts), summing edge counters, so every level is derived from one graph and
totals are preserved from level to level.
"""

from __future__ import annotations

import functools
import ipaddress
import logging

import networkx as nx

from collector.schema import (
    COUNTERS,
    RATE_COUNTERS,
    SchemaError,
    container_node_id,
    external_node_id,
    host_node_id,
    loopback_address,
    parse_address_target,
    parse_node_id,
    published_address,
    service_node_id,
)
from webapp.topology.store import TopologyState

log = logging.getLogger("portolan.topology.graph")

__all__ = [
    "LEVELS",
    "STATUS_ORDER",
    "AddressIndex",
    "build_graph",
    "coarsen",
    "edge_status",
    "external_group",
    "service_graph",
    "worst_status",
]

LEVELS = ("service", "container", "host")
# A host process the collector could not name: a socket that was listening
# before it started (so never seen opened) whose process exited before the
# collector looked for it.
UNNAMED_PROCESS = "unnamed process"
UNNAMED_REASON = ("its socket was opened before the collector started and its "
                  "process exited before the collector could read its name")
STATUS_ORDER = ("unknown", "stopped", "ok", "warning", "critical")
# The node types each level keeps; anything finer merges into its parent.
_LEVEL_TYPES = {
    "service": {"host", "container", "process", "service", "external"},
    "container": {"host", "container", "process", "external"},
    "host": {"host", "external"},
}


def worst_status(statuses) -> str:
    """The most severe of several statuses.

    >>> worst_status(["ok", "critical", "warning"])
    'critical'
    """
    ranked = [s for s in statuses if s in STATUS_ORDER]
    return max(ranked, key=STATUS_ORDER.index) if ranked else "unknown"


def edge_status(values: dict) -> str:
    """From the last interval's rates: critical when every attempt failed,
    warning when some did (cumulative totals would keep an edge red long after
    it healed).

    >>> edge_status({"connections_per_s": 5.0, "failed_per_s": 1.0})
    'warning'
    """
    failed = values.get("failed_per_s", 0)
    if failed and not values.get("connections_per_s") and not values.get(
        "accepts_per_s"
    ):
        return "critical"
    return "warning" if failed else "ok"


@functools.lru_cache(maxsize=65536)
def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=65536)
def external_group(ip: str) -> str:
    """The network an external address is shown under: its /24 (IPv4) or /64.

    >>> external_group("203.0.113.77")
    '203.0.113.0/24'
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


EDGE_ATTRS = COUNTERS + tuple(f"{name}_per_s" for name in RATE_COUNTERS)
# Bytes and datagrams are counted from the local socket's side. Edges are seen
# from the client, so a server's own ("in") record is turned around.
_CLIENT_VIEW = {
    f"{a}{suffix}": f"{b}{suffix}"
    for pair in (("bytes_sent", "bytes_received"),
                 ("datagrams_sent", "datagrams_received"))
    for a, b in (pair, pair[::-1])
    for suffix in ("", "_per_s")
}


def _add_edge(G: nx.DiGraph, src: str, dst: str, values: dict) -> None:
    """Add ``values`` (edge attribute names only) onto edge src -> dst."""
    data = G._succ[src].get(dst) if src in G else None  # the public view is slow
    if data is not None:
        for name, value in values.items():
            data[name] += value
    else:
        attrs = dict.fromkeys(EDGE_ATTRS, 0)
        attrs.update(values)
        G.add_edge(src, dst, **attrs)


class AddressIndex:
    """Resolves a flow's peer address to a node: the flow's own host first
    (bridge networks reuse the same IPs on every host), then the addresses
    that exactly one host claims (overlay networks, pod IPs, host IPs).

    A collector keeps claiming a stopped container's address (its clients'
    failed connects still point at it). When another host's running
    container holds that address now (an overlay IP given to a new task), the
    running one wins: ``running`` names the containers that run (None: all).
    """

    def __init__(self, addrs: dict[str, dict[str, str]],
                 running: set[str] | None = None):
        self.local = addrs
        self.running = running
        claims: dict[str, set[str]] = {}
        for entries in addrs.values():
            for addr, target in entries.items():
                claims.setdefault(addr, set()).add(target)
        self.shared = {}
        for addr, targets in claims.items():
            live = {t for t in targets if self._live(t)}
            pick = targets if len(targets) == 1 else live
            if len(pick) == 1:
                self.shared[addr] = next(iter(pick))

    def _live(self, target: str) -> bool:
        """Whether an index target is not a stopped container."""
        node = target.partition("#")[0]
        return (self.running is None or not node.startswith("container:")
                or node in self.running)

    def lookup(self, host_id: str, addr: str) -> tuple[str, int | None] | None:
        target = self.local.get(host_id, {}).get(addr)
        if target is not None and not self._live(target):
            now_held = self.shared.get(addr)
            if now_held is not None and self._live(now_held):
                target = now_held
        target = target or self.shared.get(addr)
        if target is None:
            return None
        try:
            return parse_address_target(target)
        except SchemaError:
            return None

    def resolve(self, host_id: str, ip: str, port: int, proto: str):
        """(node id, service port) for a connection to ``ip:port``, or None."""
        if _is_loopback(ip):
            found = self.lookup(host_id, loopback_address(host_id, port, proto))
        else:
            found = self.lookup(host_id, published_address(ip, port, proto))
            if found is None:
                found = self.lookup(host_id, ip)
        if found is None:
            return None
        node, target_port = found
        return node, port if target_port is None else target_port


def service_graph(state: TopologyState, services: bool = True,
                  edges_of_flows: dict | None = None) -> nx.DiGraph:
    """Hosts, containers, host processes, services and externals, with flows.

    Each node has ``id``, ``type``, ``name``, ``status`` and ``parent`` (the
    node it merges into one level up, or None). Edges go client -> server and
    carry the counters' totals and ``{counter}_per_s`` rates, seen from the
    client whichever side recorded them (``bytes_sent``: client to server). With
    ``services=False`` edges end at the service's owner: the container level,
    built directly (the same as ``coarsen(service_graph(state), "container")``,
    without making the service nodes first). ``edges_of_flows``, when given,
    is filled with ``(host id, FlowKey) -> (source, target, turned)``: the
    edge each flow was added onto (``turned``: seen from its server), so an
    incremental builder can update only the edges whose flows changed.
    """
    ensure_service = _ensure_service if services else _owner_of_port
    G = nx.DiGraph()
    for host_id, host in state.hosts.items():
        hid = host_node_id(host_id)
        G.add_node(
            hid, id=hid, type="host", name=host.hostname or host_id, status="ok",
            parent=None, kernel=host.kernel, mode=host.mode,
            mode_reason=host.mode_reason, labels=dict(host.labels),
            metrics=dict(host.metrics), replay=dict(host.replay),
        )
        for record in state.containers.get(host_id, {}).values():
            cid = container_node_id(host_id, record.id)
            G.add_node(
                cid, id=cid, type="container", name=record.name,
                status=record.status, parent=hid, host=host_id, image=record.image,
                state=record.state, exit_code=record.exit_code, ips=list(record.ips),
                labels=dict(record.labels), ports=list(record.ports),
                published=list(record.published), metrics=dict(record.metrics),
                container_id=record.id, command=record.command,
                compose_project=record.compose_project,
                compose_service=record.compose_service, k8s_pod=record.k8s_pod,
                k8s_namespace=record.k8s_namespace,
                processes=list(record.processes),
            )
    running = {container_node_id(host_id, record.id)
               for host_id, records in state.containers.items()
               for record in records.values()
               if record.state in ("running", "paused", "restarting")}
    index = AddressIndex(state.addrs, running)
    seen: set[str] = set()  # external addresses counted so far
    for (host_id, key), counters in state.flows.items():
        values = dict(counters)
        for name, rate in state.rates.get((host_id, key), {}).items():
            values[f"{name}_per_s"] = rate
        try:
            edge = _add_flow(G, index, ensure_service, host_id, key, values, seen)
        except SchemaError as exc:
            # A node id that parses but names an invalid host (a malformed
            # flow or address-index entry): skip it, keep the rest of the map.
            log.warning("host %s: skipping flow %s: %s", host_id, key, exc)
            continue
        if edges_of_flows is not None and edge is not None:
            edges_of_flows[(host_id, key)] = edge
    for host in state.hosts.values():
        for entry in getattr(host, "processes", None) or ():
            node = entry.get("node") if isinstance(entry, dict) else None
            if node in G and G.nodes[node].get("type") == "process":
                G.nodes[node]["pids"] = list(entry.get("pids") or [])
                G.nodes[node]["cmdline"] = str(entry.get("cmdline") or "")
    for _, _, data in G.edges(data=True):
        data["status"] = edge_status(data)
    return G


def _add_flow(G, index, ensure_service, host_id, key, values, seen):
    """Add one flow record's counters onto its client -> server edge: returns
    ``(client, server, turned)``, or None when the flow adds nothing."""
    local = _ensure_node(G, key.node)
    if key.direction == "out":
        found = None
        if _is_loopback(key.ip) and G.nodes[local]["type"] == "container":
            # Its own port inside its own namespace; else (a container on
            # the host's network) a port published on the host.
            if key.port not in G.nodes[local].get("ports", ()):
                found = index.resolve(host_id, key.ip, key.port, key.proto)
            found = found or (local, key.port)
        else:
            found = index.resolve(host_id, key.ip, key.port, key.proto)
        if found is None and _is_loopback(key.ip):
            # Its own host, on a port no socket we know of listens on (a
            # refused connect, or a server older than the collector that
            # has exited): the host itself, never "external".
            found = (_ensure_node(G, host_node_id(host_id)), key.port)
        if found is None:
            peer = _ensure_external(G, key.ip, seen)
        else:
            owner, port = found
            peer = ensure_service(G, _ensure_node(G, owner), port, key.proto)
        _add_edge(G, local, peer, values)
        return local, peer, False
    else:
        # The server's side of a connection. When the client is a node we
        # know, its own "out" record already counts the connection.
        if _is_loopback(key.ip) or index.lookup(host_id, key.ip) is not None:
            return None
        client = _ensure_external(G, key.ip, seen)
        values = client_view(values)
        server = ensure_service(G, local, key.port, key.proto)
        _add_edge(G, client, server, values)
        return client, server, True


def client_view(values: dict) -> dict:
    """A server-side flow record's values as seen from its client.

    >>> client_view({"bytes_sent": 5, "connections": 1})
    {'bytes_received': 5, 'connections': 1}
    """
    return {_CLIENT_VIEW.get(name, name): v for name, v in values.items()}


def _ensure_external(G: nx.DiGraph, ip: str, seen: set[str]) -> str:
    """The grouped node of an address that belongs to no known node.

    ``seen`` holds the addresses already counted: only 20 are listed, so the
    list cannot tell whether a further address was counted before.
    """
    group = external_group(ip)
    node_id = external_node_id(group)
    if node_id not in G:
        G.add_node(node_id, id=node_id, type="external", name=group, status="ok",
                   parent=None, addresses=[], address_count=0)
    data = G.nodes[node_id]
    if ip not in seen:
        seen.add(ip)
        data["address_count"] += 1
        if len(data["addresses"]) < 20:
            data["addresses"].append(ip)
    return node_id


def _ensure_node(G: nx.DiGraph, node_id: str) -> str:
    """Add a node known only by id (a flow's peer) with what its id tells."""
    if node_id in G:
        return node_id
    kind, parts = parse_node_id(node_id)
    attrs = {"id": node_id, "type": kind, "status": "unknown", "parent": None}
    if kind == "external":
        attrs.update(name=parts[0], status="ok", addresses=[], address_count=0)
    elif kind == "process":
        attrs.update(name=parts[1] or UNNAMED_PROCESS, host=parts[0], status="ok")
        if not parts[1]:
            attrs["unnamed_reason"] = UNNAMED_REASON
        attrs["parent"] = _ensure_node(G, host_node_id(parts[0]))
    elif kind == "container":
        attrs.update(name=parts[1][:12], host=parts[0])
        attrs["parent"] = _ensure_node(G, host_node_id(parts[0]))
    elif kind == "host":
        attrs.update(name=parts[0])
    G.add_node(node_id, **attrs)
    return node_id


def _owner_of_port(G: nx.DiGraph, owner: str, port: int, proto: str) -> str:
    return owner


def _ensure_service(G: nx.DiGraph, owner: str, port: int, proto: str) -> str:
    """The service node for ``owner``'s ``port`` (the server side of a flow)."""
    if G.nodes[owner]["type"] not in ("container", "process"):
        return owner
    sid = service_node_id(owner, port, proto)
    if sid not in G:
        owner_attrs = G.nodes[owner]
        G.add_node(
            sid, id=sid, type="service", parent=owner, port=port,
            proto=proto, name=f"{owner_attrs['name']}:{port}/{proto}",
            status=owner_attrs["status"], host=owner_attrs.get("host"),
        )
    return sid


def coarsen(G: nx.DiGraph, level: str) -> nx.DiGraph:
    """Merge every node finer than ``level`` into its nearest kept ancestor.

    Edge counters are summed; a node's status is the worst of what merged into
    it, so a host with a red container is red when zoomed out.

    >>> G = nx.DiGraph()
    >>> G.add_node("h", type="host", parent=None, status="ok")
    >>> G.add_node("c", type="container", parent="h", status="critical")
    >>> coarsen(G, "host").nodes["h"]["status"]
    'critical'
    """
    if level not in _LEVEL_TYPES:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    keep = _LEVEL_TYPES[level]

    def target(node: str) -> str:
        seen = set()
        while G.nodes[node].get("type") not in keep:
            parent = G.nodes[node].get("parent")
            if parent is None or parent not in G or node in seen:
                return node
            seen.add(node)
            node = parent
        return node

    mapping = {n: target(n) for n in G}
    H = nx.DiGraph()
    for n, data in G.nodes(data=True):
        if mapping[n] == n:
            H.add_node(n, **data)
    for n, data in G.nodes(data=True):
        t = mapping[n]
        if t != n:
            H.nodes[t]["status"] = worst_status(
                [H.nodes[t].get("status"), data.get("status")]
            )
    for u, v, data in G.edges(data=True):
        _add_edge(H, mapping[u], mapping[v],
                  {k: data[k] for k in EDGE_ATTRS if k in data})
    for _, _, data in H.edges(data=True):
        data["status"] = edge_status(data)
    _roll_up_status(H)
    return H


def _roll_up_status(H: nx.DiGraph) -> None:
    """A parent that is kept at this level shows its worst child."""
    for _n, data in H.nodes(data=True):
        parent = data.get("parent")
        if parent in H and H.nodes[parent].get("type") == "host":
            H.nodes[parent]["status"] = worst_status(
                [H.nodes[parent]["status"], data.get("status")]
            )


def build_graph(state: TopologyState, level: str) -> nx.DiGraph:
    """The graph at one zoom level: ``service``, ``container`` or ``host``."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    if level == "service":
        return _with_rolled_up_status(service_graph(state))
    G = service_graph(state, services=False)
    return coarsen(G, level) if level == "host" else _with_rolled_up_status(G)


def _with_rolled_up_status(G: nx.DiGraph) -> nx.DiGraph:
    _roll_up_status(G)
    return G
