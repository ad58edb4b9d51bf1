"""The collector's loop: read the tracer and Docker, attribute, report to Redis.

The sources return plain records; attribution (which container a cgroup, pid
or local address belongs to) is done here, in pure functions over them, and
the only I/O to Redis goes through RedisReporter.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from collector.cgroups import containers_in_cgroup_tree
from collector.container_metrics import disk_used_ratio
from collector.host_addresses import host_addresses
from collector.host_info import HostLoad, read_host_info, read_host_load
from collector.host_processes import (
    ProcessIdentity,
    ProcessNames,
    host_listeners,
    listener_for,
)
from collector.readings import FlowSample, TracerReading
from collector.reporter import HostReport, RedisReporter, add_flow
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    SchemaError,
    container_node_id,
    host_node_id,
    loopback_address,
    make_address_target,
    process_node_id,
    published_address,
)

log = logging.getLogger("portolan.collector")

# Seconds between walks of the cgroup tree for containers no runtime reports.
CGROUP_SCAN_EVERY = 5.0
# The host's own addresses change rarely; /proc/net/fib_trie costs 1 ms a read.
HOST_ADDRESSES_EVERY = 5.0
# At most this often, the host's listening sockets are read from /proc again
# when an accept finds none (a visit of every process's file descriptors).
HOST_LISTENERS_EVERY = 5.0
# An address keeps naming the container that last held it this long after the
# container is gone: flows counted while it held it still name it.
ADDRESS_MEMORY = 3600.0


def _missing_capabilities_reason(kernel: tuple[int, int]) -> str | None:
    """Why eBPF cannot load for want of capabilities (None if it can); warns
    about those whose lack only costs process details."""
    from collector import capabilities as caps

    held = caps.effective_capabilities()
    if lacking := caps.missing_for_process_details(held):
        log.warning("without %s: no process names, users or services of other "
                    "processes (grant it, e.g. cap_add)", ", ".join(lacking))
    if lacking := caps.missing_for_ebpf(held, kernel):
        return f"missing capabilities {', '.join(lacking)} (grant them, e.g. cap_add)"
    return None


def open_tracer(force_fallback: bool = False, trace_udp: bool = True,
                program: str = "auto"):
    """The eBPF tracer where it loads, else the /proc fallback and the reason.

    ``trace_udp=False`` leaves out the route-lookup hooks (PORTOLAN_TRACE_UDP);
    ``program`` picks the eBPF program (PORTOLAN_EBPF_PROGRAM).
    """
    from collector.procfs import ProcfsTracer

    if force_fallback:
        return ProcfsTracer(), "fallback requested"
    from collector.ebpf.support import ebpf_unavailable_reason, kernel_version

    reason = ebpf_unavailable_reason() or _missing_capabilities_reason(kernel_version())
    if reason is None:
        try:
            from collector.ebpf.tracer import ConnectionTracer

            tracer = ConnectionTracer(trace_udp=trace_udp, program=program)
            log.info("eBPF tracer: %s program%s", tracer.program,
                     f" ({tracer.program_note})" if tracer.program_note else "")
            if tracer.missing_hooks:
                log.warning("eBPF tracer without: %s", "; ".join(tracer.missing_hooks))
            return tracer, ""
        except Exception as exc:  # noqa: BLE001 - any load failure means fallback
            reason = f"the eBPF program failed to load: {exc}"
    log.warning(
        "eBPF unavailable (%s); using the /proc fallback: short-lived connections "
        "will be missed", reason,
    )
    return ProcfsTracer(), reason


@dataclass(slots=True)
class Attribution:
    """What the collector knows about local containers this interval."""

    host_id: str
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    ip_owner: dict[str, str] = field(default_factory=dict)  # ip -> container id
    # pid (tgid) -> the process as a user knows it, for this interval's pids.
    processes: dict[int, ProcessIdentity] = field(default_factory=dict)
    # (ip, port, proto) listened on in the host's namespace -> node id.
    listeners: dict[tuple[str, int, str], str] = field(default_factory=dict)


def node_for_sample(sample: FlowSample, attribution: Attribution, resolver) -> str:
    """The node id a sample's local side belongs to."""
    cid = None
    if sample.cgroup_id:
        cid = resolver.container_for_cgroup_id(sample.cgroup_id)
    if cid is None and sample.pid:
        cid = resolver.container_for_pid(sample.pid)
    if cid is None and sample.local_ip:
        cid = attribution.ip_owner.get(sample.local_ip)
    if cid is not None:
        return container_node_id(attribution.host_id, cid)
    if sample.direction == "in" and not sample.pid:
        # An accept, in softirq: the socket listening on its address says whose.
        node = listener_for(attribution.listeners, sample.local_ip, sample.port,
                            sample.proto)
        if node is not None:
            return node
    identity = attribution.processes.get(sample.pid)
    # "" when nothing names it: the graph says why (see UNNAMED_PROCESS).
    return process_node_id(attribution.host_id,
                           identity.name if identity else sample.comm)


def flows_from_reading(
    reading: TracerReading, attribution: Attribution, resolver
) -> Counter:
    """Attribute every sample of a reading: (FlowKey, counter) -> delta."""
    flows: Counter = Counter()
    for sample in reading.flows:
        try:
            key = FlowKey(
                node=node_for_sample(sample, attribution, resolver),
                direction=sample.direction,
                ip=sample.ip,
                port=sample.port,
                proto=sample.proto,
            )
        except SchemaError as exc:
            log.warning("dropping malformed sample %r: %s", sample, exc)
            continue
        add_flow(flows, key, sample.counters)
    return flows


def listening_ports(
    reading: TracerReading, attribution: Attribution, resolver
) -> dict[str, set[tuple[int, str]]]:
    """Node id -> (port, proto) its processes listen on, from this reading."""
    ports: dict[str, set[tuple[int, str]]] = {}
    for listen in reading.listens:
        sample = FlowSample(listen.cgroup_id, listen.pid, listen.comm, "in", "",
                            "", listen.port, listen.proto)
        node = node_for_sample(sample, attribution, resolver)
        ports.setdefault(node, set()).add((listen.port, listen.proto))
    # A UDP server is seen answering on its own port (there is no listen()).
    for sample in reading.flows:
        if sample.direction == "in" and sample.proto == "udp" and sample.pid:
            node = node_for_sample(sample, attribution, resolver)
            ports.setdefault(node, set()).add((sample.port, "udp"))
    return ports


def host_listener_table(
    reading: TracerReading, scanned: list, attribution: Attribution, resolver
) -> dict[tuple[str, int, str], str]:
    """(ip, port, proto) -> node, for the sockets that listen in the host's
    network namespace: those read from /proc (``scanned``, HostListener) and
    those the tracer saw opened, minus the ones inside a container's own
    namespace. ``attribution.processes`` must name their pids."""
    on_host_network = {container_node_id(attribution.host_id, r.id)
                       for r in attribution.containers.values() if r.host_network}
    table = {}
    found = [(s.ip, s.port, s.proto, FlowSample(0, s.pid, "", "out", "", "",
                                                s.port, s.proto))
             for s in scanned]
    found += [(s.ip, s.port, s.proto, FlowSample(s.cgroup_id, s.pid, s.comm, "out",
                                                 "", "", s.port, s.proto))
              for s in reading.listens]
    for ip, port, proto, sample in found:
        node = node_for_sample(sample, attribution, resolver)
        if node.startswith("process:") or node in on_host_network:
            table[(ip, port, proto)] = node
    return table


def address_index(
    host_id: str,
    host_ips: list[str],
    attribution: Attribution,
    listeners: dict[str, set[tuple[int, str]]],
) -> dict[str, str]:
    """This host's entries of the global address index (see collector.schema).

    Container IPs name their container, the host's IPs name the host; a
    published port names the container port behind it, on every host address
    it is bound to and on loopback; a listening port of a host process, or of
    a container on the host's network, names that process or container.
    """
    index = {ip: make_address_target(host_node_id(host_id)) for ip in host_ips}
    on_host_network = {container_node_id(host_id, r.id)
                       for r in attribution.containers.values() if r.host_network}
    for node, ports in listeners.items():
        if node.startswith("process:") or node in on_host_network:
            for port, proto in ports:
                index[loopback_address(host_id, port, proto)] = node
                for ip in host_ips:
                    index[published_address(ip, port, proto)] = node
    for ip, cid in attribution.ip_owner.items():
        index[ip] = container_node_id(host_id, cid)
    # Stopped containers first, so that a running one wins a shared address: a
    # stopped server keeps its published ports, and its clients' failed
    # connects still point at it.
    ordered = sorted(attribution.containers.values(),
                     key=lambda r: r.state == "running")
    for record in ordered:
        node = container_node_id(host_id, record.id)
        for pub in record.published:
            target = make_address_target(node, pub["target"])
            bound = pub["ip"]
            ips = host_ips if bound in ("0.0.0.0", "::", "") else [bound]
            for ip in ips:
                index[published_address(ip, pub["port"], pub["proto"])] = target
            if bound in ("0.0.0.0", "::", "", "127.0.0.1", "::1"):
                index[loopback_address(host_id, pub["port"], pub["proto"])] = target
    return index


def remember_addresses(
    known: dict[str, tuple[str, float]], records: list[ContainerRecord],
    now: float, seen: dict[str, str] | None = None,
) -> dict[str, tuple[str, float]]:
    """IP -> (container id, when it last held it): running containers'
    addresses and those ``seen`` in use by a container's sockets (a container
    that exits before the engine is asked has only those), plus the last owner
    of an address no container holds now, while that container exists or for
    ADDRESS_MEMORY seconds after: flows counted while it held the address still
    name it, and "external" is kept for addresses outside every host.

    >>> a = ContainerRecord(id="a", name="a", state="running", ips=["10.0.0.2"])
    >>> remember_addresses({}, [a], now=0)
    {'10.0.0.2': ('a', 0)}
    >>> a.state, a.ips = "exited", []
    >>> remember_addresses({"10.0.0.2": ("a", 0)}, [a], now=9999)
    {'10.0.0.2': ('a', 0)}
    >>> remember_addresses({"10.0.0.2": ("a", 0)}, [], now=60)
    {'10.0.0.2': ('a', 0)}
    >>> remember_addresses({"10.0.0.2": ("a", 0)}, [], now=ADDRESS_MEMORY + 1)
    {}
    """
    present = {r.id for r in records}
    owners = {ip: (cid, at) for ip, (cid, at) in known.items()
              if cid in present or now - at <= ADDRESS_MEMORY}
    owners.update({ip: (cid, now) for ip, cid in (seen or {}).items()})
    owners.update({ip: (r.id, now) for r in records if r.state == "running"
                   for ip in r.ips})
    return owners


def addresses_in_use(
    reading: TracerReading, attribution: Attribution, resolver, host_ips
) -> dict[str, str]:
    """IP -> container id, from the local address of sockets a container's own
    processes used (not the host's addresses: a container on the host's
    network uses those)."""
    own = set(host_ips)
    found = {}
    for sample in reading.flows:
        ip = sample.local_ip
        if not ip or ip in own or ip in found or _is_loopback(ip):
            continue
        cid = None
        if sample.cgroup_id:
            cid = resolver.container_for_cgroup_id(sample.cgroup_id)
        if cid is None and sample.pid:
            cid = resolver.container_for_pid(sample.pid)
        record = attribution.containers.get(cid) if cid else None
        if cid is not None and not (record and record.host_network):
            found[ip] = cid
    return found


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def record_from_details(details: dict) -> ContainerRecord:
    """A ContainerRecord from DockerWatcher's details of one container.

    >>> r = record_from_details({"id": "ab", "name": "web", "state": "running",
    ...     "ports": [{"container_port": 80, "proto": "tcp", "host_ip": "0.0.0.0",
    ...                "host_port": 8080}]})
    >>> r.published
    [{'ip': '0.0.0.0', 'port': 8080, 'target': 80, 'proto': 'tcp'}]
    """
    published = [
        {"ip": p.get("host_ip") or "0.0.0.0", "port": int(p["host_port"]),
         "target": int(p["container_port"]), "proto": p.get("proto") or "tcp"}
        for p in details.get("ports") or []
        if p.get("host_port") and p.get("container_port")
    ]
    return ContainerRecord(
        id=details.get("id", ""),
        name=details.get("name") or details.get("id", "")[:12],
        image=details.get("image", ""),
        state=details.get("state", "unknown"),
        exit_code=int(details.get("exit_code") or 0),
        ips=list(details.get("ips") or []),
        labels=dict(details.get("labels") or {}),
        published=published,
        pid=int(details.get("pid") or 0),
        started_at=details.get("started_at", ""),
        command=details.get("command", ""),
        compose_project=details.get("compose_project", ""),
        compose_service=details.get("compose_service", ""),
        k8s_pod=details.get("k8s_pod", ""),
        k8s_namespace=details.get("k8s_namespace", ""),
        host_network="host" in (details.get("networks") or {}),
    )


def host_metrics(load: HostLoad) -> dict:
    """The host's load and capacity, as the map and the anomaly rules read them."""
    return {
        "cpus": load.cpus,
        "memory_total_bytes": load.memory_total_bytes,
        "memory_available_bytes": load.memory_available_bytes,
        "load1": load.load1,
        "load5": load.load5,
        "load15": load.load15,
        "uptime_seconds": load.uptime_seconds,
        "disk_used_ratio": disk_used_ratio(),
    }


class Collector:
    """One host's collector: call ``step()`` once per interval."""

    def __init__(self, host_id, tracer, watcher, resolver, reporter: RedisReporter,
                 sampler=None, mode_reason: str = ""):
        info = read_host_info()
        self.host = HostRecord(
            id=host_id,
            hostname=info.hostname or socket.gethostname(),
            kernel=info.kernel or platform.release(),
            mode=getattr(tracer, "mode", "unknown"),
            mode_reason=mode_reason,
            labels=dict(info.labels),
        )
        self.tracer = tracer
        self.watcher = watcher
        self.sampler = sampler
        self.resolver = resolver
        self.reporter = reporter
        self.details: dict[str, dict] = {}
        self.published: dict[str, list[dict]] = {}  # container id -> last seen
        self._cgroup_scan_at = -CGROUP_SCAN_EVERY
        self._cgroup_found: dict[str, tuple[str, str]] = {}
        self.attribution = Attribution(host_id=host_id)
        # ip -> (container id, when it last held it); see remember_addresses.
        self.address_owners: dict[str, tuple[str, float]] = {}
        # Node id -> (port, proto) listened on; kept: listen() is seen once.
        self.listeners: dict[str, set[tuple[int, str]]] = {}
        self.host_ips: list[str] = []
        self._host_ips_at = -HOST_ADDRESSES_EVERY
        self.names = ProcessNames()
        # Process node id -> {pids, cmdline, seen}: what its details list.
        self.process_details: dict[str, dict] = {}
        # The host namespace's listening sockets as last read from /proc.
        self.scanned_listeners: list = []
        self._listeners_at = -HOST_LISTENERS_EVERY
        self._last_step = time.monotonic()
        # Counts the tracer dropped since start, published with the host's
        # metrics so that /metrics can say how complete the counts are.
        self.lost_total = 0

    def refresh_containers(self) -> None:
        if self.watcher.connected or self.watcher.syncs:
            self.details = self.watcher.snapshot()
        else:
            # The engine has never answered (no Docker on this host): the
            # cgroup scan alone says which containers exist, and a container
            # whose cgroup is gone is gone.
            self.details = {}
        self.details.update(self.cgroup_only_containers())
        records = [record_from_details(d) for d in self.details.values()]
        for r in records:
            # The engine forgets a stopped container's published ports; we don't.
            if r.state == "running" and r.published:
                self.published[r.id] = r.published
            elif not r.published and r.id in self.published:
                r.published = self.published[r.id]
        self.published = {cid: p for cid, p in self.published.items()
                          if cid in self.details}
        self.attribution.containers = {r.id: r for r in records}
        self.address_owners = remember_addresses(
            self.address_owners, records, time.monotonic())
        self.attribution.ip_owner = {
            ip: cid for ip, (cid, _) in self.address_owners.items()}

    def cgroup_only_containers(self) -> dict[str, dict]:
        """Containers of runtimes we cannot ask (containerd, CRI-O, Podman,
        LXC...), found by their cgroup paths, every ``CGROUP_SCAN_EVERY`` s."""
        now = time.monotonic()
        if now - self._cgroup_scan_at >= CGROUP_SCAN_EVERY:
            self._cgroup_scan_at = now
            self._cgroup_found = containers_in_cgroup_tree(self.resolver.root)
        return {
            cid: {"id": cid, "name": f"{runtime}-{cid[:12]}", "state": "running",
                  "labels": {"portolan.runtime": runtime, "portolan.cgroup": path}}
            for cid, (runtime, path) in self._cgroup_found.items()
            # Docker's own are asked of the engine, once it has answered.
            if not (runtime == "docker" and self.watcher.syncs)
            and (cid not in self.details
                 or self.details[cid].get("labels", {}).get("portolan.runtime"))
        }

    def step(self) -> bool:
        """Read one interval's deltas and report them; True if Redis took them."""
        self.refresh_containers()
        if time.monotonic() - self._host_ips_at >= HOST_ADDRESSES_EVERY:
            self.host_ips = host_addresses()
            self._host_ips_at = time.monotonic()
        reading = self.tracer.read()
        # Cgroups made since the last read, before their containers may be gone.
        self.resolver.learn(reading.cgroups)
        now = time.monotonic()
        interval, self._last_step = now - self._last_step, now
        if reading.lost:
            log.warning("the tracer lost %d counts this interval", reading.lost)
            self.lost_total += reading.lost
        flows = self.attribute(reading)
        listening = listening_ports(reading, self.attribution, self.resolver)
        for (_, port, proto), node in self.attribution.listeners.items():
            listening.setdefault(node, set()).add((port, proto))
        for node, ports in listening.items():
            self.listeners.setdefault(node, set()).update(ports)
        metrics = self.sampler.sample(self.details) if self.sampler else {}
        # Identity and labels are read once, at start; load every interval.
        self.host.metrics = host_metrics(read_host_load())
        self.host.processes = [
            {"node": node, "pids": sorted(entry["pids"]), "cmdline": entry["cmdline"]}
            for node, entry in sorted(self.process_details.items())]
        self.host.metrics["tracer_lost_total"] = self.lost_total
        containers = []
        for record in self.attribution.containers.values():
            record.host = self.host.id
            node = container_node_id(self.host.id, record.id)
            record.metrics = metrics.get(record.id, {})
            record.processes = self.sampler.services(record.id) if self.sampler else []
            record.ports = sorted(
                {p for p, _ in self.listeners.get(node, ())}
                | {s["port"] for s in record.processes if s.get("port")}
            )
            containers.append(record)
        addrs = address_index(self.host.id, self.host_ips, self.attribution,
                              self.listeners)
        report = HostReport(host=self.host, containers=containers, addrs=addrs,
                            flows=flows, interval=interval)
        return self.reporter.report(report)

    def attribute(self, reading: TracerReading) -> Counter:
        """The reading's flows by node, with host processes named by process and
        accepts by the socket that listened (re-read from /proc on a miss)."""
        if not self.scanned_listeners:
            self.scan_listeners()
        flows = self._attribute_once(reading)
        unnamed = process_node_id(self.host.id, "")
        if any(key.node == unnamed for key, _ in flows) and self.scan_listeners():
            flows = self._attribute_once(reading)
        return flows

    def scan_listeners(self) -> bool:
        """Read the host's listening sockets again, unless done lately; True
        if it did."""
        now = time.monotonic()
        if now - self._listeners_at < HOST_LISTENERS_EVERY:
            return False
        self._listeners_at = now
        self.scanned_listeners = host_listeners()
        return True

    def _note_processes(self, reading: TracerReading) -> None:
        """Remember the pids and command line behind each process node."""
        now = time.monotonic()
        for sample in reading.flows:
            if not sample.pid or (sample.cgroup_id and self.resolver
                                  .container_for_cgroup_id(sample.cgroup_id)):
                continue
            # Gone by now: the name the tracer gives, and no command line.
            identity = self.attribution.processes.get(
                sample.pid, ProcessIdentity(sample.comm))
            node = process_node_id(self.host.id, identity.name)
            entry = self.process_details.setdefault(
                node, {"pids": [], "cmdline": "", "seen": now})
            if sample.pid not in entry["pids"] and len(entry["pids"]) < 20:
                entry["pids"].append(sample.pid)
            entry["cmdline"] = identity.cmdline or entry["cmdline"]
            entry["seen"] = now
        self.process_details = {
            node: entry for node, entry in self.process_details.items()
            if now - entry["seen"] < ADDRESS_MEMORY}

    def _attribute_once(self, reading: TracerReading) -> Counter:
        seen = addresses_in_use(reading, self.attribution, self.resolver,
                                self.host_ips)
        if seen:
            self.address_owners = remember_addresses(
                self.address_owners, list(self.attribution.containers.values()),
                time.monotonic(), seen)
            self.attribution.ip_owner.update(seen)
        pids = [s.pid for s in reading.flows] + [s.pid for s in reading.listens]
        pids += [s.pid for s in self.scanned_listeners]
        self.attribution.processes = self.names.names(pids)
        self._note_processes(reading)
        self.attribution.listeners = host_listener_table(
            reading, self.scanned_listeners, self.attribution, self.resolver)
        return flows_from_reading(reading, self.attribution, self.resolver)

    def run(self, interval: float = 1.0, duration: float | None = None,
            stop: threading.Event | None = None) -> None:
        """Step every ``interval`` seconds until ``duration`` passes, ``stop``
        is set (between steps, never inside one) or forever."""
        log.info("collector %s running in %s mode (pid %d)", self.host.id,
                 self.host.mode, os.getpid())
        end = None if duration is None else time.monotonic() + duration
        stop = stop or threading.Event()
        next_tick = time.monotonic()
        try:
            while not stop.is_set():
                next_tick += interval
                self.step()
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                stop.wait(max(0.0, min(next_tick, end or next_tick) - now))
        finally:
            # One last read so that nothing counted since the last step is lost.
            try:
                self.step()
            finally:
                self.tracer.close()
                self.watcher.close()
