"""Which containers a collector reports when no runtime API answers."""

from __future__ import annotations

from types import SimpleNamespace

from collector.agent import Attribution, Collector, address_index, record_from_details
from collector.schema import container_node_id, loopback_address, published_address

CID = "e" * 64


class NoEngine:
    """A Docker watcher on a host without Docker: it never connects."""

    connected = False
    syncs = 0

    def snapshot(self) -> dict:
        raise AssertionError("never asked: the engine has not answered")


def collector_over(cgroup_root) -> Collector:
    return Collector("h", tracer=SimpleNamespace(mode="ebpf"), watcher=NoEngine(),
                     resolver=SimpleNamespace(root=cgroup_root), reporter=None)


def test_container_found_by_cgroup_goes_when_its_cgroup_goes(tmp_path):
    pod = tmp_path / "kubepods" / "besteffort" / "pod1234"
    (pod / CID).mkdir(parents=True)
    collector = collector_over(tmp_path)
    collector.refresh_containers()
    record = collector.attribution.containers[CID]
    assert record.state == "running"
    assert record.labels["portolan.runtime"] == "kubernetes"

    (pod / CID).rmdir()
    collector._cgroup_scan_at = float("-inf")  # the next scan is due
    collector.refresh_containers()
    assert CID not in collector.attribution.containers
    assert CID not in collector.details


def test_listeners_of_a_host_network_container_are_addressable():
    """A client of hostIP:port, or a host process on 127.0.0.1:port, reaches
    the container on the host's network that listens there, not the host."""
    host_net = record_from_details({
        "id": "a" * 64, "name": "hostnet", "state": "running",
        "networks": {"host": {"ip": ""}}})
    bridged = record_from_details({
        "id": "b" * 64, "name": "bridged", "state": "running",
        "networks": {"bridge": {"ip": "172.17.0.2"}}, "ips": ["172.17.0.2"]})
    assert host_net.host_network and not bridged.host_network
    attribution = Attribution("h", {r.id: r for r in (host_net, bridged)},
                              {"172.17.0.2": bridged.id})
    host_node = container_node_id("h", host_net.id)
    bridged_node = container_node_id("h", bridged.id)
    index = address_index("h", ["192.0.2.10"], attribution,
                          {host_node: {(8080, "tcp")}, bridged_node: {(80, "tcp")}})
    assert index[published_address("192.0.2.10", 8080)] == host_node
    assert index[loopback_address("h", 8080)] == host_node
    # A bridged container's port is reached at its own IP, not the host's.
    assert published_address("192.0.2.10", 80) not in index
    assert index["172.17.0.2"] == bridged_node
