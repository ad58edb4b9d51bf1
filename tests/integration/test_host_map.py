"""The host itself on the map: host processes, loopback and the host's own
addresses, attributed as exactly as containers (issue 14).

One ``manage.py collect`` runs for the module. Host processes are the host's
python3 run through symlinks with distinctive names (a process's comm is the
name it was executed by), so every node of a test is its own; containers run
the same python with /usr, /lib and /lib64 bind-mounted read-only. Traffic
stays on loopback, on this host's own addresses, or with containers these
tests create.
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from pathlib import Path

import pytest

from collector.schema import Keys, container_node_id
from tests.conftest import (
    HOST_PROGRAM_MOUNTS,
    TEST_IMAGE,
    TEST_LABEL,
    TEST_SESSION,
    collector_reporting,
    free_port,
    wait_for,
    write_programs,
)
from tests.processes import LoggedProcess
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state

pytestmark = [pytest.mark.ebpf]

HOST = "hostmap-host"
N = 20
PYTHON = "/usr/bin/python3"

# A dual-stack TCP server: reads k bytes, answers m, closes.
SERVER = r"""
import socket, sys
host, port, k, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
srv = socket.socket(family)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if family == socket.AF_INET6:
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind((host, port))
srv.listen(1024)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    got = 0
    while got < k:
        data = c.recv(k - got)
        if not data:
            break
        got += len(data)
    c.sendall(b"s" * m)
    c.close()
"""

# n connections, spread over `threads` worker threads that each give
# themselves a thread name (what bpf_get_current_comm() reports).
CLIENT = r"""
import ctypes, socket, sys, threading, time
host = sys.argv[1]
port, n, k, m, threads = (int(a) for a in sys.argv[2:7])
linger = float(sys.argv[7]) if len(sys.argv) > 7 else 0
libc = ctypes.CDLL(None)

def work(count, name):
    if name:
        libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"c" * k)
        got = 0
        while got < m:
            data = s.recv(65536)
            if not data:
                break
            got += len(data)
        s.close()

if threads <= 1:
    work(n, "")
else:
    share = [n // threads + (i < n % threads) for i in range(threads)]
    ts = [threading.Thread(target=work, args=(c, f"worker-{i}"))
          for i, c in enumerate(share)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
print("done", flush=True)
time.sleep(linger)
"""

UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data[:8], peer)
"""

# Datagrams to host:port for `seconds`, each answered.
UDP_CLIENT = r"""
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.sendto(b"q" * 32, (host, port))
    s.recvfrom(2048)
    time.sleep(0.01)
print("done", flush=True)
"""

SCRIPTS = {"server.py": SERVER, "client.py": CLIENT, "udp_server.py": UDP_SERVER,
           "udp_client.py": UDP_CLIENT}


def unique_name(prefix: str) -> str:
    """A process name that fits a comm (15 characters) and is this test's own."""
    assert len(prefix) <= 6, prefix
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class HostPrograms:
    """Host python under chosen names, output under artifacts/; every process
    started is stopped after."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[LoggedProcess] = []

    def start(self, name: str, script: str, *args) -> LoggedProcess:
        exe = self.root / name
        if not exe.exists():
            exe.symlink_to(PYTHON)
        proc = LoggedProcess(f"test_host_map-{name}",
                             [exe, "-u", self.root / script, *args]).start()
        self.procs.append(proc)
        return proc

    def run(self, name: str, script: str, *args, timeout: float = 60) -> str:
        proc = self.start(name, script, *args)
        code = proc.wait(timeout)
        out = proc.output()
        assert code == 0 and "done" in out, proc.describe()
        return out

    def serve(self, name: str, script: str, *args) -> LoggedProcess:
        proc = self.start(name, script, *args)
        assert wait_for(lambda: "listening" in proc.output() or not proc.alive,
                        timeout=30), proc.describe()
        proc.assert_alive("the server did not start")
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=10)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    return write_programs(tmp_path_factory.mktemp("portolan-host-map"), SCRIPTS)


@pytest.fixture(scope="module")
def programs(scripts):
    progs = HostPrograms(scripts)
    yield progs
    progs.stop()


@pytest.fixture(scope="module")
def old_server(programs):
    """A host server that was listening before the collector started (as Redis
    is under ``make run``): the tracer never sees its listen()."""
    name, port = unique_name("ptold"), free_port()
    programs.serve(name, "server.py", "::", port, 10, 30)
    return name, port


@pytest.fixture(scope="module")
def collector(redis_server, ebpf_ready, old_server, tmp_path_factory, repo_root):
    with collector_reporting("test_host_map-collector", ["manage.py", "collect"],
                             redis_server.url, HOST, tmp_path_factory.mktemp("var"),
                             repo_root) as client:
        yield client


def graph(client, level: str):
    return build_graph(read_state(client, Keys(), ttl=30), level)


def edge(G, source: str, target: str, port: int | None = None):
    """The data of the edge from the node named ``source`` to the node named
    ``target`` (at the service level: to its service on ``port``), or None."""
    for u, v, data in G.edges(data=True):
        dst = G.nodes[v]
        if port is not None:
            if dst.get("type") != "service" or dst.get("port") != port:
                continue
            dst = G.nodes[dst["parent"]]
        if G.nodes[u].get("name") == source and dst.get("name") == target:
            return data
    return None


def wait_edge(client, source, target, connections, level="container", port=None,
              timeout=10.0):
    """The edge once it counts ``connections`` (or the last one seen)."""
    def check():
        found = edge(graph(client, level), source, target, port)
        return found if found and found["connections"] >= connections else None

    found = wait_for(check, timeout=timeout, interval=0.3)
    return found or edge(graph(client, level), source, target, port) or {
        "missing, edges from it": describe_edges(graph(client, level), source)}


def wait_reports(client, reports: int, timeout: float = 60) -> None:
    """Until the collector has reported ``reports`` more times (its score in
    the collectors set is the time of its last report)."""
    seen = [client.zscore(Keys().collectors, HOST)]

    def reported():
        score = client.zscore(Keys().collectors, HOST)
        if score != seen[-1]:
            seen.append(score)
        return len(seen) > reports

    assert wait_for(reported, timeout=timeout, interval=0.1), (
        f"{len(seen) - 1} of {reports} reports in {timeout} s")


def describe_edges(G, source: str) -> list[tuple[str, str, int]]:
    return [(u, G.nodes[v].get("name"), d["connections"])
            for u, v, d in G.edges(data=True) if G.nodes[u].get("name") == source]


def own_addresses() -> set[str]:
    from collector.host_addresses import host_addresses

    return set(host_addresses()) | {"127.0.0.1", "::1"}


def assert_host_is_known(G) -> None:
    """No node of the map is unnamed, and no address of this host is external."""
    names = [d.get("name") for _, d in G.nodes(data=True)]
    assert names, "the map is empty: nothing to check"
    assert "unknown" not in names, names
    mine = own_addresses()
    for _, data in G.nodes(data=True):
        if data.get("type") != "external":
            continue
        assert not set(data.get("addresses", ())) & mine, data
        net = ipaddress.ip_network(data["name"], strict=False)
        assert not any(ipaddress.ip_address(a) in net for a in mine), (
            data["name"], data["addresses"])


# ------------------------------------------------- host process <-> host process


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("started", ["before", "after"])
def test_loopback_between_host_processes_is_one_edge(collector, programs,
                                                    old_server, address, started):
    if started == "before":
        server, port = old_server
    else:
        server, port = unique_name("ptsrv"), free_port()
        programs.serve(server, "server.py", "::", port, 10, 30)
    client = unique_name("ptcli")
    programs.run(client, "client.py", address, port, N, 10, 30, 1)
    found = wait_edge(collector, client, server, N)
    assert found.get("connections") == N, found
    assert found["failed"] == 0
    service = wait_edge(collector, client, server, N, level="service", port=port)
    assert service.get("connections") == N, service
    assert service["bytes_sent"] >= N * 10 and service["bytes_received"] >= N * 30
    assert_host_is_known(graph(collector, "service"))


@pytest.mark.parametrize("exits", [True, False], ids=["gone", "running"])
def test_threaded_client_is_one_process_node(collector, programs, exits):
    """Connections made from worker threads (named by the threads) go to one
    node named after the process, whether it is gone by the collector's next
    read or not; its details list its pid and command line."""
    server, port = unique_name("ptsrv"), free_port()
    programs.serve(server, "server.py", "127.0.0.1", port, 10, 30)
    client = unique_name("ptthr")
    proc = programs.start(client, "client.py", "127.0.0.1", port, N, 10, 30, 4,
                          0 if exits else 30)
    assert wait_for(lambda: "done" in proc.output(), timeout=60), proc.describe()
    found = wait_edge(collector, client, server, N)
    assert found.get("connections") == N, found
    G = graph(collector, "container")
    names = {d.get("name") for _, d in G.nodes(data=True)}
    assert not any(name.startswith("worker-") for name in names if name), names
    node = next(d for _, d in G.nodes(data=True) if d.get("name") == client)
    assert node["type"] == "process"
    assert wait_for(lambda: proc.pid in next(
        d for _, d in graph(collector, "container").nodes(data=True)
        if d.get("name") == client).get("pids", ()), timeout=5), node
    if not exits:
        node = next(d for _, d in graph(collector, "container").nodes(data=True)
                    if d.get("name") == client)
        assert f"{client} -u" in node["cmdline"], node


def test_a_server_started_before_the_collector_is_named(collector, programs,
                                                       redis_server):
    """Redis (listening before the collector, as under ``make run``): clients'
    connections go to `redis-server` and its service, not to an unnamed node."""
    client = unique_name("ptred")
    programs.run(client, "client.py", "127.0.0.1", redis_server.port, N, 0, 0, 1)
    found = wait_edge(collector, client, "redis-server", N)
    assert found.get("connections") == N, found
    service = wait_edge(collector, client, "redis-server", N, level="service",
                        port=redis_server.port)
    assert service.get("connections") == N, service
    assert_host_is_known(graph(collector, "service"))


# ------------------------------------------------- containers <-> host processes


def python_in_container(scripts: Path) -> dict:
    return {**HOST_PROGRAM_MOUNTS, str(scripts): {"bind": "/scripts", "mode": "ro"}}


def py(script: str, *args) -> str:
    return " ".join([PYTHON, "-u", f"/scripts/{script}", *map(str, args)])


def gateway_of(container) -> str:
    container.reload()
    nets = container.attrs["NetworkSettings"]["Networks"]
    return next(iter(nets.values()))["Gateway"]


def primary_address() -> str:
    """This host's IPv4 address on its default route's interface."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            iface = fields[0]
            break
    else:
        pytest.fail("no default route")
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                             struct.pack("256s", iface.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def wait_done(container, timeout: float = 60.0) -> None:
    assert container.wait(timeout=timeout)["StatusCode"] == 0, container.logs()


@pytest.mark.docker
def test_containers_reach_a_host_process_through_gateway_and_host_address(
    collector, programs, containers, scripts
):
    server, port = unique_name("ptsrv"), free_port()
    programs.serve(server, "server.py", "0.0.0.0", port, 10, 30)
    vols = python_in_container(scripts)
    probe = containers.run("sleep 60", stop_signal="SIGKILL")
    via_gateway = containers.run(py("client.py", gateway_of(probe), port, N, 10, 30,
                                    1), volumes=vols)
    via_host = containers.run(py("client.py", primary_address(), port, N, 10, 30, 1),
                              volumes=vols)
    wait_done(via_gateway)
    wait_done(via_host)
    for client in (via_gateway, via_host):
        found = wait_edge(collector, client.name, server, N)
        assert found.get("connections") == N, (client.name, found)
        service = wait_edge(collector, client.name, server, N, level="service",
                            port=port)
        assert service.get("connections") == N, service
    assert_host_is_known(graph(collector, "service"))


@pytest.mark.docker
def test_a_host_process_reaches_a_container_by_ip_and_published_port(
    collector, programs, containers, scripts
):
    published = free_port()
    server = containers.run(py("server.py", "0.0.0.0", 8080, 10, 30),
                            volumes=python_in_container(scripts),
                            ports={"8080/tcp": ("127.0.0.1", published)})
    assert wait_for(lambda: b"listening" in server.logs(), timeout=30)
    by_ip, by_port = unique_name("ptbyip"), unique_name("ptpub")
    programs.run(by_ip, "client.py", containers.ip(server), 8080, N, 10, 30, 1)
    programs.run(by_port, "client.py", "127.0.0.1", published, N, 10, 30, 1)
    for client in (by_ip, by_port):
        found = wait_edge(collector, client, server.name, N)
        assert found.get("connections") == N, (client, found)
        service = wait_edge(collector, client, server.name, N, level="service",
                            port=8080)
        assert service.get("connections") == N, service


@pytest.mark.docker
def test_a_short_lived_udp_container_leaves_only_its_own_edge(
    collector, programs, containers, scripts, docker_client
):
    server, port = unique_name("ptudp"), free_port()
    programs.serve(server, "udp_server.py", port)
    probe = containers.run("sleep 60", stop_signal="SIGKILL")
    client = docker_client.containers.run(
        TEST_IMAGE, ["sh", "-c", py("udp_client.py", gateway_of(probe), port, 0.5)],
        name=f"pt-{uuid.uuid4().hex[:8]}", detach=True, auto_remove=True,
        labels={TEST_LABEL: TEST_SESSION}, volumes=python_in_container(scripts),
    )
    node = container_node_id(HOST, client.id)
    try:
        client.wait(timeout=30)
    except Exception:  # noqa: BLE001, S110 - already removed
        pass
    # The low-level list: the high-level one inspects each, and may race
    # its removal.
    assert wait_for(lambda: not docker_client.api.containers(
        all=True, filters={"id": client.id}), timeout=30), "never removed"

    def client_edge():
        G = graph(collector, "container")
        return next((d for u, v, d in G.edges(data=True)
                     if u == node and G.nodes[v].get("name") == server
                     and d["datagrams_sent"] > 0), None)

    assert wait_for(client_edge, timeout=10, interval=0.3), "no client edge"
    # Several reports after it is gone: its address still names it.
    wait_reports(collector, 4)
    G = graph(collector, "service")
    assert_host_is_known(G)
    inbound = [G.nodes[u] for u, v, _ in G.in_edges(data=True)
               if G.nodes[v].get("type") == "service"
               and G.nodes[G.nodes[v]["parent"]].get("name") == server]
    assert [n["id"] for n in inbound] == [node], inbound
