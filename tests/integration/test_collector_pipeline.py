"""The whole collector (eBPF, Docker events, cgroups) into Redis and the graph.

One `python -m collector` runs for the module; each test starts containers and
reads the container-level graph back from the real Redis, as the map does.
"""

import os
import subprocess
import sys

import pytest

from collector.schema import Keys
from tests.conftest import collector_reporting, wait_for
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state

pytestmark = [pytest.mark.ebpf, pytest.mark.docker]

HOST = "pipeline-host"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def collector(redis_server, docker_client, ebpf_ready, tmp_path_factory, repo_root):
    with collector_reporting("test_collector_pipeline-collector",
                             ["-m", "collector"], redis_server.url, HOST,
                             tmp_path_factory.mktemp("var"), repo_root,
                             PORTOLAN_HISTORY_STEP="1") as client:
        yield client


def node_named(client, name):
    G = build_graph(read_state(client, Keys(), ttl=30), "container")
    for _, data in G.nodes(data=True):
        if data.get("type") == "container" and data.get("name") == name:
            return data
    return None


def wait_node(client, name, predicate=lambda n: True, timeout=30.0):
    return wait_for(lambda: (n := node_named(client, name)) and predicate(n) and n,
                    timeout=timeout, interval=0.2)


def test_limits_and_usage_follow_a_load(collector, containers):
    c = containers.run("sleep 3600", mem_limit="96m", nano_cpus=500_000_000)
    node = wait_node(collector, c.name, lambda n: n["metrics"].get("cpu_cores")
                     is not None)
    assert node, "container never showed with metrics"
    m = node["metrics"]
    assert m["memory_limit_bytes"] == 96 * MiB
    assert m["cpu_limit_cores"] == pytest.approx(0.5)
    assert m["cpu_cores"] < 0.1
    c.exec_run(["sh", "-c", "yes > /dev/null"], detach=True)
    c.exec_run(["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=40"])
    # One report with both: the last one before dd ended may already show
    # `yes` burning CPU but not yet dd's 40 MiB.
    busy = wait_node(collector, c.name, lambda n: (
        (n["metrics"].get("cpu_cores") or 0) > 0.3
        and (n["metrics"].get("memory_working_set_bytes") or 0) >= 35 * MiB))
    assert busy, "CPU usage and memory never rose under load"
    assert busy["metrics"]["cpu_percent_of_limit"] > 60


def test_oom_kill_shows(collector, containers):
    # The init only sleeps, so the OOM killer cannot take the container with
    # it; the exec'd tail buffers 100 MiB (no newline) against a 32 MiB limit.
    c = containers.run("sleep 120", mem_limit="32m", memswap_limit="32m")
    assert wait_node(collector, c.name), "the container never showed"
    c.exec_run(["sh", "-c", "head -c 100m /dev/zero | tail"], detach=True)
    node = wait_node(collector, c.name,
                     lambda n: n["metrics"].get("memory_oom_kills", 0) >= 1,
                     timeout=60)
    if not node:
        c.reload()
        state = {k: c.attrs["State"].get(k) for k in ("Status", "OOMKilled")}
        last = wait_node(collector, c.name, timeout=5)
        pytest.fail(f"OOM kill never showed; container state {state}, last "
                    f"node {last}")


def test_compose_labels_rename_and_service_port(collector, containers):
    c = containers.run(
        "httpd -f -p 8080 -h /var/www",
        labels={"com.docker.compose.project": "shop",
                "com.docker.compose.service": "web"},
    )
    # The port (from the namespace's socket list) can show one report before
    # the process that owns it (from the pids' sockets): wait for both.
    node = wait_node(collector, c.name, lambda n: 8080 in n.get("ports", []) and any(
        p["command"] == "httpd" and p["port"] == 8080
        for p in n.get("processes", [])))
    assert node, ("the service's port and its process never showed together: "
                  f"{wait_node(collector, c.name, lambda n: True)}")
    assert node["compose_project"] == "shop" and node["compose_service"] == "web"
    c.rename(c.name + "-renamed")
    assert wait_node(collector, c.name + "-renamed"), "the rename never showed"


def test_restarts_are_counted(collector, containers):
    c = containers.run("sleep 0.3; exit 3",
                       restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
    node = wait_node(collector, c.name,
                     lambda n: n["metrics"].get("restart_count", 0) >= 2, timeout=30)
    assert node, "restarts never counted"


def http_gets_reach_service(collector, port: int, container: str,
                            service_port: int, n: int = 20) -> bool:
    """n HTTP requests from this process to 127.0.0.1:port, then whether a
    process -> service edge with n connections reaches ``container``'s
    ``service_port`` in the service-level graph."""
    import socket

    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while s.recv(4096):
                pass

    def edge_from_this_process():
        G = build_graph(read_state(collector, Keys(), ttl=30), "service")
        for u, v, data in G.edges(data=True):
            target = G.nodes[v]
            if (G.nodes[u]["type"] == "process" and target.get("type") == "service"
                    and target.get("port") == service_port
                    and G.nodes[target["parent"]]["name"] == container
                    and data["connections"] >= n):
                return data
        return None

    return bool(wait_for(edge_from_this_process, timeout=30, interval=0.3))


def test_host_to_published_port_reaches_the_container(collector, containers):
    from tests.conftest import free_port

    port = free_port()
    c = containers.run("httpd -f -p 80 -h /var/www",
                       ports={"80/tcp": ("127.0.0.1", port)})
    assert wait_node(collector, c.name, lambda n: n["published"]), "not published"
    assert http_gets_reach_service(collector, port, c.name, 80), \
        "host -> published port edge not attributed to the container's service"


def test_host_to_a_host_network_container_reaches_the_container(collector,
                                                                containers):
    """A container on the host's network has no IP of its own: a connection to
    a port it listens on, on the host's loopback, is to that container."""
    from tests.conftest import free_port

    port = free_port()
    c = containers.run(f"httpd -f -p 127.0.0.1:{port} -h /var/www",
                       network_mode="host")
    assert wait_for(lambda: port in (node_named(collector, c.name) or {}).get(
        "ports", ()), timeout=30, interval=0.2), "its listening port never showed"
    assert http_gets_reach_service(collector, port, c.name, port), \
        "host -> host-network container edge not attributed to its service"


def test_ebpf_dump_prints_the_program(repo_root):
    out = subprocess.run([sys.executable, "-m", "collector", "--ebpf-dump"],
                         cwd=repo_root, capture_output=True, text=True, check=True)
    assert "inet_sock_set_state" in out.stdout and "cflags:" in out.stdout
    # The setting reaches the program: no route-lookup hooks without UDP.
    env = dict(os.environ, PORTOLAN_TRACE_UDP="0")
    tcp_only = subprocess.run([sys.executable, "-m", "collector", "--ebpf-dump"],
                              cwd=repo_root, env=env, capture_output=True, text=True,
                              check=True)
    assert "-DHAVE_FIB4" in out.stdout.splitlines()[0]  # the cflags line
    assert "-DHAVE_FIB4" not in tcp_only.stdout.splitlines()[0]


def test_container_of_an_unaskable_runtime_shows_by_cgroup(collector):
    """A Kubernetes-layout cgroup made in the real v2 hierarchy shows as a node."""
    from collector.cgroups import CgroupResolver

    root = CgroupResolver().root
    assert root is not None, "no cgroup v2 hierarchy mounted"
    cid = "e" * 64
    pod = root / "kubepods" / "besteffort" / "podportolan-test"
    path = pod / cid
    path.mkdir(parents=True)
    try:
        node = wait_node(collector, f"kubernetes-{cid[:12]}", timeout=30)
        assert node, "the cgroup-only container never showed"
        assert node["labels"]["portolan.runtime"] == "kubernetes"
        assert node["container_id"] == cid
    finally:
        for d in (path, pod, pod.parent, pod.parent.parent):
            try:
                d.rmdir()
            except OSError:
                pass
