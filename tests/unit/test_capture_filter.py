"""capture --container: which containers, flows and addresses a capture keeps."""

from collector.capture.format import Report
from collector.capture.recorder import ContainerFilter
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    container_node_id,
    host_node_id,
    make_flow_field,
    process_node_id,
)

H = "h1"


def field(node, ip, port=80, counter="connections"):
    return make_flow_field(FlowKey(node, "out", ip, port), counter)


def report():
    web = ContainerRecord(id="w", name="shop-web", ips=["10.0.0.2"],
                          labels={"tier": "front"})
    db = ContainerRecord(id="d", name="shop-db", ips=["10.0.0.3"])
    other = ContainerRecord(id="o", name="ci-runner", ips=["10.0.0.9"])
    w, d, o = (container_node_id(H, c) for c in "wdo")
    dockerd, sshd = process_node_id(H, "dockerd"), process_node_id(H, "sshd")
    flows = {field(w, "10.0.0.3", 5432): 3, field(o, "10.0.0.2"): 4,
             field(o, "192.0.2.1", 443): 5, field(dockerd, "10.0.0.3", 5432): 1,
             field(sshd, "192.0.2.7", 22): 6}
    return Report(
        ts=1.75e9, host=HostRecord(id=H, processes=[
            {"node": dockerd, "pids": [1]}, {"node": sshd, "pids": [2]}]),
        containers=[web, db, other],
        addrs={"10.0.0.2": w, "10.0.0.3": d, "10.0.0.9": o,
               "192.0.2.2": host_node_id(H), "127.0.0.1:22/tcp": sshd},
        flows=flows, rates={f: 1.0 for f in flows}, base=dict(flows))


def test_no_pattern_keeps_everything():
    assert ContainerFilter().apply(report()) == report()


def test_name_glob_keeps_those_containers_and_what_talks_to_them():
    kept = ContainerFilter(["shop-*"]).apply(report())
    assert [c.name for c in kept.containers] == ["shop-web", "shop-db"]
    w = container_node_id(H, "w")
    dockerd = process_node_id(H, "dockerd")
    assert set(kept.flows) == {field(w, "10.0.0.3", 5432),
                               field(dockerd, "10.0.0.3", 5432)}
    assert set(kept.rates) == set(kept.flows) == set(kept.base)
    # ci-runner's call to shop-web is the runner's flow: left out with it.
    assert [p["node"] for p in kept.host.processes] == [dockerd]
    assert set(kept.addrs) == {"10.0.0.2", "10.0.0.3", "192.0.2.2"}


def test_label_pattern():
    kept = ContainerFilter(["tier=front"]).apply(report())
    assert [c.name for c in kept.containers] == ["shop-web"]
    assert set(kept.flows) == {field(container_node_id(H, "w"), "10.0.0.3", 5432)}
