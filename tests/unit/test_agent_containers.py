"""Which containers a collector reports when no runtime API answers."""

from __future__ import annotations

from types import SimpleNamespace

from collector.agent import Collector

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
