"""DockerWatcher follows ``docker network connect/disconnect`` on a running
container: the engine reports those only as network events, never as
container events, and the container's addresses change with them."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import TEST_LABEL, TEST_SESSION, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def network(docker_client):
    net = docker_client.networks.create(
        f"pt-net-{uuid.uuid4().hex[:8]}",
        driver="bridge",
        labels={TEST_LABEL: TEST_SESSION},
    )
    yield net
    try:
        net.remove()
    except Exception:  # noqa: BLE001, S110 - a container still attached, or gone
        pass


def test_network_connect_and_disconnect_change_the_containers_ips(
    containers, watcher, network
):
    c = containers.run("sleep 3600", stop_signal="SIGKILL")
    bridge_ip = containers.ip(c)
    # Seen running on its first network (not only at "create", without an IP).
    assert wait_for(
        lambda: bridge_ip in watcher.snapshot().get(c.id, {}).get("ips", ()),
        timeout=5,
    )
    before = set(watcher.snapshot()[c.id]["ips"])

    network.connect(c)
    c.reload()
    new_ip = c.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    assert new_ip and new_ip not in before

    def ips():
        return watcher.snapshot()[c.id]["ips"]

    assert wait_for(lambda: new_ip in ips(), timeout=3), ips()
    assert network.name in watcher.snapshot()[c.id]["networks"]

    network.disconnect(c)
    assert wait_for(lambda: new_ip not in ips(), timeout=3), ips()
    assert set(ips()) == before
    assert network.name not in watcher.snapshot()[c.id]["networks"]
