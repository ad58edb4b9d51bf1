"""Real containers: cgroup metrics, network counters, services and DockerWatcher.

Each test starts its own busybox containers (removed after) and reads them the
way the collector does: cgroup files located through the init pid, /proc for
network namespaces and sockets, the events stream for identity.
"""

from __future__ import annotations

import os
import time

import pytest

from collector.cgroup_metrics import CgroupMetricsReader, cpu_cores
from collector.netns_metrics import read_net_dev
from collector.services import services_for_container
from tests.conftest import require, wait_for

pytestmark = pytest.mark.docker

MiB = 1024 * 1024


@pytest.fixture
def reader():
    return CgroupMetricsReader()


def init_pid(container) -> int:
    container.reload()
    return container.attrs["State"]["Pid"]


def cores_over(reader, container_id, pid, seconds=1.0) -> float:
    first = reader.read(container_id, pid)
    time.sleep(seconds)
    second = reader.read(container_id, pid)
    return cpu_cores(first, second, second.timestamp - first.timestamp)


def load_windows(reader, container_id, pid, throttled=False, timeout=60.0):
    """Cores used in 2 s windows, read until one shows a load (> 0.3 core,
    and with ``throttled`` the limit hit): a loaded machine may start the
    load late or starve it a while, so one window right after starting it
    proves nothing either way."""
    windows = []

    def loaded():
        windows.append(cores_over(reader, container_id, pid, seconds=2.0))
        hit = not throttled or reader.read(container_id, pid).cpu_throttled_periods
        return windows[-1] > 0.3 and hit

    assert wait_for(loaded, timeout=timeout, interval=0), (
        f"the load never showed: cores in each window {windows}")
    return windows


def test_limits_cpu_and_memory_follow_load(containers, reader, watcher):
    c = containers.run("sleep 3600", mem_limit="128m", nano_cpus=500_000_000)
    pid = init_pid(c)
    m = reader.read(c.id, pid)
    assert m is not None, "cgroup of a running container not found"
    assert m.memory_limit_bytes == 128 * MiB
    assert m.cpu_limit_cores == pytest.approx(0.5)
    assert m.pids >= 1
    idle = cores_over(reader, c.id, pid)
    assert idle < 0.1

    # The watcher reports the same limits from the engine.
    details = wait_for(lambda: watcher.snapshot().get(c.id), timeout=30)
    assert details["memory_limit_bytes"] == 128 * MiB
    assert details["cpu_limit_cores"] == pytest.approx(0.5)
    assert details["pid"] == pid

    c.exec_run(["sh", "-c", "yes > /dev/null"], detach=True)
    windows = load_windows(reader, c.id, pid, throttled=True)
    assert max(windows) < 0.65, f"yes under a 0.5-core limit used {windows}"
    after = reader.read(c.id, pid)
    assert after.cpu_throttled_periods > 0 and after.cpu_throttled_ns > 0

    before = reader.read(c.id, pid).memory_usage_bytes
    # tmpfs pages are charged to the writer's cgroup and stay while the file does.
    c.exec_run(["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=48"])
    grown = reader.read(c.id, pid)
    assert grown.memory_usage_bytes - before >= 40 * MiB
    assert grown.memory_working_set_bytes >= 40 * MiB
    assert grown.memory_usage_bytes <= grown.memory_limit_bytes


def test_oom_kill_is_counted(containers, reader, watcher):
    # The container's init only sleeps; the exec'd pipeline is the memory hog.
    # tail buffers its whole input when it has no newline: 100 MiB > 32 MiB.
    c = containers.run("sleep 3600", mem_limit="32m", memswap_limit="32m")
    pid = init_pid(c)
    c.exec_run(["sh", "-c", "head -c 100m /dev/zero | tail"], detach=True)
    readings = []

    def oom_counted():
        r = reader.read(c.id, pid)
        readings.append(r)
        return r is not None and r.memory_oom_kills >= 1 and r

    m = wait_for(oom_counted, timeout=60)
    if not m:
        c.reload()
        state = {k: c.attrs["State"].get(k)
                 for k in ("Status", "OOMKilled", "ExitCode")}
        last = readings[-1] if readings else None
        pytest.fail(
            f"no OOM kill in the container's cgroup after {len(readings)} reads: "
            f"last reading {last}; container {state}; "
            f"processes {c.top() if state['Status'] == 'running' else '-'}"
        )
    assert wait_for(lambda: watcher.oom_counts.get(c.id, 0) >= 1, timeout=30), (
        f"the watcher saw no oom event for the container: {watcher.oom_counts}")
    assert watcher.snapshot()[c.id]["oom_kills"] >= 1
    assert watcher.event_counts.get("oom", 0) >= 1


def test_restarts_are_counted(containers, watcher):
    c = containers.run(
        "sleep 0.2; exit 3",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )
    details = wait_for(
        lambda: (d := watcher.snapshot().get(c.id)) and d["restart_count"] >= 2 and d,
        timeout=30,
    )
    assert details, watcher.snapshot().get(c.id)
    assert details["restart_policy"] == "on-failure"
    final = wait_for(
        lambda: (d := watcher.snapshot().get(c.id)) and d["state"] == "exited" and d,
        timeout=30,
    )
    assert final["restart_count"] == 3 and final["exit_code"] == 3


def test_rename_shows(containers, watcher):
    c = containers.run("sleep 3600")
    assert wait_for(lambda: c.id in watcher.snapshot(), timeout=30)
    new_name = c.name + "-renamed"
    c.rename(new_name)
    seen = wait_for(
        lambda: watcher.snapshot()[c.id]["name"] == new_name,
        timeout=30,
        interval=0.01,
    )
    assert seen, f"rename not seen in 30 s: {watcher.snapshot()[c.id]['name']}"


def test_compose_and_kubernetes_labels(containers, watcher):
    c = containers.run(
        "sleep 3600",
        labels={
            "com.docker.compose.project": "shop",
            "com.docker.compose.service": "web",
            "io.kubernetes.pod.name": "web-7d9f",
            "io.kubernetes.pod.namespace": "prod",
            "io.kubernetes.container.name": "nginx",
        },
    )
    d = wait_for(
        lambda: (d := watcher.snapshot().get(c.id)) and d["state"] == "running" and d,
        timeout=30,
    )
    assert (d["compose_project"], d["compose_service"]) == ("shop", "web")
    assert (d["k8s_pod"], d["k8s_namespace"], d["k8s_container"]) == (
        "web-7d9f",
        "prod",
        "nginx",
    )
    assert d["image"].startswith("portolan-test")
    assert d["command"] == "sh -c sleep 3600"
    assert d["started_at"] and d["created"]


def test_pause_and_destroy_follow(containers, watcher):
    c = containers.run("sleep 3600")
    assert wait_for(lambda: c.id in watcher.snapshot(), timeout=30)
    c.pause()
    assert wait_for(lambda: watcher.snapshot()[c.id]["state"] == "paused", timeout=2)
    c.unpause()
    assert wait_for(lambda: watcher.snapshot()[c.id]["state"] == "running", timeout=2)
    c.remove(force=True)
    assert wait_for(lambda: c.id not in watcher.snapshot(), timeout=30)


def test_server_process_shows_as_service(containers, reader, watcher):
    c = containers.run(
        "httpd -f -p 8080", user="nobody", ports={"8080/tcp": ("127.0.0.1", None)}
    )
    pid = init_pid(c)
    paths = reader.locate(c.id, pid)
    assert paths is not None

    def httpd_service():
        return [s for s in services_for_container(paths.procs_dir) if s.port]

    services = wait_for(httpd_service, timeout=10)
    assert services, services_for_container(paths.procs_dir)
    (service,) = services
    assert (service.command, service.port, service.proto) == ("httpd", 8080, "tcp")
    assert service.user == "nobody"  # resolved from the container's /etc/passwd
    assert service.label == "httpd :8080"
    assert "httpd -f -p 8080" in service.cmdline

    # Ports and addresses exist from "start" on, not at "create".
    d = wait_for(
        lambda: (d := watcher.snapshot().get(c.id)) and d["ports"] and d["ips"] and d,
        timeout=30,
    )
    (published,) = d["ports"]
    assert published["container_port"] == 8080 and published["host_port"] > 0
    assert d["networks"]["bridge"]["ip"] == containers.ip(c) == d["ips"][0]


def test_network_counters_from_the_namespace(containers):
    c = containers.run("httpd -f -p 8080 -h /var/www")
    pid = init_pid(c)
    assert wait_for(
        lambda: (
            c.exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).exit_code
            == 0
        ),
        timeout=10,
    )
    before = read_net_dev(pid, include_loopback=True)
    assert "eth0" in before and "lo" in before
    for _ in range(5):
        c.exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    after = read_net_dev(pid, include_loopback=True)
    assert after["lo"].rx_packets > before["lo"].rx_packets
    assert after["lo"].tx_bytes - before["lo"].tx_bytes > 500
    assert "lo" not in read_net_dev(pid)


def test_vanished_container_reads_none(containers, reader):
    c = containers.run("sleep 3600")
    pid = init_pid(c)
    assert reader.read(c.id, pid) is not None
    c.remove(force=True)
    assert reader.read(c.id, pid) is None
    assert reader.read(c.id) is None


def test_v2_unified_hierarchy_on_this_kernel(containers):
    """The kernel's own v2 files: on this hybrid host ``unified`` has no
    controllers enabled, but every v2 cgroup has cpu.stat, so CPU usage and
    the v2 path lookup are checked against real kernel output."""
    unified = "/sys/fs/cgroup/unified"
    require(os.path.exists(f"{unified}/cgroup.controllers"), "no v2 hierarchy mounted")
    c = containers.run("sleep 3600", nano_cpus=500_000_000)
    pid = init_pid(c)
    v2 = CgroupMetricsReader(unified)
    assert v2.version == 2
    assert v2.locate(c.id, pid).procs_dir == f"{unified}/docker/{c.id}"
    c.exec_run(["sh", "-c", "yes > /dev/null"], detach=True)
    windows = load_windows(v2, c.id, pid)
    assert max(windows) < 0.65, f"yes under a 0.5-core limit used {windows}"
    v1_usage = CgroupMetricsReader().read(c.id, pid).cpu_usage_ns
    v2_usage = v2.read(c.id, pid).cpu_usage_ns
    assert v2_usage == pytest.approx(v1_usage, rel=0.05)
    assert CgroupMetricsReader(unified).read(c.id).cgroup_version == 2  # by path
