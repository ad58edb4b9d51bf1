"""The /proc fallback tracer against real containers (no eBPF involved)."""

from __future__ import annotations

import time

import pytest

from collector.procfs import ProcfsTracer
from tests.conftest import cgroup_id_of, wait_for

pytestmark = pytest.mark.docker


def total(flows, counter, **match) -> int:
    return sum(
        f.counters.get(counter, 0)
        for f in flows
        if all(getattr(f, k) == v for k, v in match.items())
    )


def test_long_lived_connection_between_containers(containers):
    port = 8090
    tracer = ProcfsTracer()
    assert tracer.mode == "procfs"
    server = containers.run(f"sleep 120 | nc -l -p {port}")
    server_ip = containers.ip(server)
    server_cgroup = cgroup_id_of(server)
    flows = []

    def listening():
        reading = tracer.read()
        flows.extend(reading.flows)
        return [
            ls
            for ls in reading.listens
            if ls.port == port and ls.cgroup_id == server_cgroup
        ]

    listens = wait_for(listening, timeout=10, interval=0.2)
    assert listens, "the server's listening socket never showed"
    assert listens[0].comm == "nc"
    assert listens[0].ip in ("0.0.0.0", "::")  # busybox nc listens dual-stack

    client = containers.run(f"sleep 120 | nc {server_ip} {port}")
    client_cgroup = cgroup_id_of(client)
    out = {
        "direction": "out",
        "cgroup_id": client_cgroup,
        "ip": server_ip,
        "port": port,
        "proto": "tcp",
    }
    inbound = {
        "direction": "in",
        "cgroup_id": server_cgroup,
        "local_ip": server_ip,
        "port": port,
        "proto": "tcp",
    }

    def both_seen():
        flows.extend(tracer.read().flows)
        return total(flows, "connections", **out) and total(flows, "accepts", **inbound)

    assert wait_for(both_seen, timeout=10, interval=0.2)
    # Still established: later reads add nothing.
    for _ in range(3):
        time.sleep(0.1)
        flows.extend(tracer.read().flows)
    assert total(flows, "connections", **out) == 1
    assert total(flows, "accepts", **inbound) == 1
    client_ip = containers.ip(client)
    accepted = [
        f
        for f in flows
        if f.direction == "in" and f.port == port and f.cgroup_id == server_cgroup
    ]
    assert {f.ip for f in accepted} == {client_ip}
    assert {f.comm for f in accepted} == {"nc"}
    tracer.close()
