"""The collector's loop: read the tracer and Docker, attribute, report to Redis.

The sources return plain records; attribution (which container a cgroup, pid
or local address belongs to) is done here, in pure functions over them, and
the only I/O to Redis goes through RedisReporter.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from collector.readings import FlowSample, TracerReading
from collector.reporter import HostReport, RedisReporter, add_flow
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    SchemaError,
    container_node_id,
    process_node_id,
)

log = logging.getLogger("portolan.collector")


def open_tracer(force_fallback: bool = False):
    """The eBPF tracer where it loads, else the /proc fallback and the reason."""
    from collector.procfs import ProcfsTracer

    if force_fallback:
        return ProcfsTracer(), "fallback requested"
    from collector.ebpf.support import ebpf_unavailable_reason

    reason = ebpf_unavailable_reason()
    if reason is None:
        try:
            from collector.ebpf.tracer import ConnectionTracer

            tracer = ConnectionTracer()
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
    return process_node_id(attribution.host_id, sample.comm or "unknown")


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


def listening_ports(reading: TracerReading, resolver) -> dict[str, set[int]]:
    """Container id -> ports its processes listen on, from this reading."""
    ports: dict[str, set[int]] = {}
    for listen in reading.listens:
        cid = None
        if listen.cgroup_id:
            cid = resolver.container_for_cgroup_id(listen.cgroup_id)
        if cid is None and listen.pid:
            cid = resolver.container_for_pid(listen.pid)
        if cid is not None:
            ports.setdefault(cid, set()).add(listen.port)
    return ports


def remember_addresses(
    known: dict[str, str], records: list[ContainerRecord]
) -> dict[str, str]:
    """IP -> container id: running containers' addresses, plus the last owner of
    an address no running container holds now, as long as that container still
    exists (an exited container's connections are still attributed to it).

    >>> a = ContainerRecord(id="a", name="a", state="running", ips=["10.0.0.2"])
    >>> remember_addresses({}, [a])
    {'10.0.0.2': 'a'}
    >>> a.state, a.ips = "exited", []
    >>> remember_addresses({"10.0.0.2": "a"}, [a])
    {'10.0.0.2': 'a'}
    """
    present = {r.id for r in records}
    owners = {ip: cid for ip, cid in known.items() if cid in present}
    owners.update({ip: r.id for r in records if r.state == "running" for ip in r.ips})
    return owners


class Collector:
    """One host's collector: call ``step()`` once per interval."""

    def __init__(self, host_id, tracer, docker_source, resolver, reporter:
                 RedisReporter, mode_reason: str = "", labels=None):
        self.host = HostRecord(
            id=host_id,
            hostname=socket.gethostname(),
            kernel=platform.release(),
            mode=getattr(tracer, "mode", "unknown"),
            mode_reason=mode_reason,
            labels=dict(labels or {}),
        )
        self.tracer = tracer
        self.docker = docker_source
        self.resolver = resolver
        self.reporter = reporter
        self.attribution = Attribution(host_id=host_id)
        self.ports: dict[str, set[int]] = {}

    def refresh_containers(self) -> None:
        records = self.docker.containers()
        if records is None:
            return  # engine away: keep what we knew
        self.attribution.containers = {r.id: r for r in records}
        self.attribution.ip_owner = remember_addresses(
            self.attribution.ip_owner, records
        )

    def step(self) -> bool:
        """Read one interval's deltas and report them; True if Redis took them."""
        self.refresh_containers()
        reading = self.tracer.read()
        if reading.lost:
            log.warning("the tracer lost %d counts this interval", reading.lost)
        flows = flows_from_reading(reading, self.attribution, self.resolver)
        for cid, ports in listening_ports(reading, self.resolver).items():
            self.ports.setdefault(cid, set()).update(ports)
        containers = []
        for record in self.attribution.containers.values():
            record.host = self.host.id
            record.ports = sorted(self.ports.get(record.id, ()))
            containers.append(record)
        addrs = {
            ip: container_node_id(self.host.id, cid)
            for ip, cid in self.attribution.ip_owner.items()
        }
        report = HostReport(host=self.host, containers=containers, addrs=addrs,
                            flows=flows)
        return self.reporter.report(report)

    def run(self, interval: float = 1.0, duration: float | None = None) -> None:
        """Step every ``interval`` seconds until ``duration`` passes (or forever)."""
        log.info("collector %s running in %s mode (pid %d)", self.host.id,
                 self.host.mode, os.getpid())
        end = None if duration is None else time.monotonic() + duration
        next_tick = time.monotonic()
        try:
            while True:
                next_tick += interval
                self.step()
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                time.sleep(max(0.0, min(next_tick, end or next_tick) - now))
        finally:
            # One last read so that nothing counted since the last step is lost.
            self.step()
            self.tracer.close()
            self.docker.close()
