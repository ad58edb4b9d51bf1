"""Red where the fault is, in real containers, with the back end as `make run`
runs it: `python -m collector` and `manage.py analyze` at their default
intervals against one Redis (issue 20).

- a client that calls a port nothing ever served is at fault, not the server;
- a server whose service on one port stops while another serves is critical;
- front -> api -> db with db stopped: db ranks first, api and front say
  "because of db", `manage.py graph` says what the map's builder says, and
  after db is back all is ok within the stated bound and stays ok.

Stated bounds (bench/fault_timing.py measures them, BENCHMARKS.md has the
figures): a stopped container or a stopped service is red within 5 s (a hard
fact raises at once); a client's refused calls within twice that; back to ok
within 30 s of the recovery (the 10 s failure window, then five clean steps).
Here they are waited for with a generous TIMEOUT: a loaded machine is slow,
not wrong; the time it took is printed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
import redis

from collector.schema import Keys
from tests.conftest import (
    HOST_PROGRAM_MOUNTS,
    TEST_LABEL,
    TEST_SESSION,
    RedisServer,
    wait_collector_in_ebpf_mode,
    wait_for,
)
from tests.integration.test_faults import wait_analyzer_steps
from tests.processes import LoggedProcess
from webapp.anomalies.keys import edge_target
from webapp.anomalies.merge import NO_ANALYZER, read_verdict
from webapp.builder.levels import build_levels
from webapp.topology.store import read_state

pytestmark = [pytest.mark.ebpf, pytest.mark.docker]

HOST = "blame-host"
TIMEOUT = 90.0
ROOT = Path(__file__).resolve().parents[2]

# Serves ports; stops serving port P once /ctl/stop-P exists.
PORTS_SERVER = """
import os, select, socket, sys
def listen(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(128); return s
socks = {int(p): listen(int(p)) for p in sys.argv[1:]}
while True:
    ready, _, _ = select.select(list(socks.values()), [], [], 0.2)
    for ls in ready:
        conn, _ = ls.accept(); conn.settimeout(1)
        try:
            conn.recv(64); conn.sendall(b"ok")
        except OSError:
            pass
        conn.close()
    for p in list(socks):
        if os.path.exists(f"/ctl/stop-{p}"):
            socks.pop(p).close()
"""

# Listens only while its database answers (a health-gated service), and
# asks the database on every request.
GATED_API = """
import select, socket, sys, time
port, db = int(sys.argv[1]), (sys.argv[2], int(sys.argv[3]))
def db_ok():
    try:
        with socket.create_connection(db, 1) as s:
            s.sendall(b"q"); s.recv(64)
        return True
    except OSError:
        return False
ls, checked = None, 0.0
while True:
    if time.monotonic() - checked > 0.5:
        checked, ok = time.monotonic(), db_ok()
        if ok and ls is None:
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("0.0.0.0", port)); ls.listen(128)
        elif not ok and ls is not None:
            ls.close(); ls = None
    if ls is None:
        time.sleep(0.1); continue
    if select.select([ls], [], [], 0.2)[0]:
        conn, _ = ls.accept(); conn.settimeout(2)
        try:
            conn.recv(64); db_ok(); conn.sendall(b"ok")
        except OSError:
            pass
        conn.close()
"""

CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
while True:
    try:
        with socket.create_connection((host, port), 1) as s:
            s.sendall(b"q"); s.recv(64)
    except OSError:
        pass
    time.sleep(0.1)
"""


class Backend:
    """The collector and the analyzer as named subprocesses (one may be
    stopped and started again), logs under artifacts/."""

    def __init__(self, env: dict):
        self.env = env
        self.procs: dict[str, LoggedProcess] = {}

    def start(self, name: str, argv: list[str]) -> None:
        self.procs[name] = LoggedProcess(f"test_blame-{name}", argv, cwd=ROOT,
                                         env=self.env).start()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def assert_alive(self) -> None:
        for proc in self.procs.values():
            proc.assert_alive()


@pytest.fixture(scope="module")
def backend(docker_client, ebpf_ready, tmp_path_factory):
    server = RedisServer()
    server.start()
    env = dict(
        os.environ, REDIS_URL=server.url, PORTOLAN_HOST_ID=HOST,
        PORTOLAN_VAR_DIR=str(tmp_path_factory.mktemp("var")), LOG_LEVEL="INFO",
        # Other work loads this machine: its load is not what is tested here.
        PORTOLAN_ANOMALY_HOST_LOAD_PER_CPU="1000",
        # Nor its other containers (other tests', left-over ones that exited
        # with an error): all causes are ranked, so ours are never cut off
        # the list by theirs, which tie with them and sort by random ids.
        PORTOLAN_ANOMALY_TOP_CAUSES="1000",
    )
    procs = Backend(env)
    procs.start("collector", [sys.executable, "-m", "collector"])
    procs.start("analyzer", [sys.executable, "manage.py", "analyze"])
    client = redis.Redis.from_url(server.url)
    try:
        wait_collector_in_ebpf_mode(client, HOST)
        yield client, procs
        procs.assert_alive()
    finally:
        for name in list(procs.procs):
            procs.stop(name)
        server.stop()


@pytest.fixture
def programs(tmp_path):
    (tmp_path / "server.py").write_text(PORTS_SERVER)
    (tmp_path / "api.py").write_text(GATED_API)
    (tmp_path / "client.py").write_text(CLIENT)
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    volumes = {**HOST_PROGRAM_MOUNTS,
               str(tmp_path): {"bind": "/prog", "mode": "ro"},
               str(ctl): {"bind": "/ctl", "mode": "ro"}}
    return volumes, ctl


@pytest.fixture
def fixed_address_net(docker_client):
    """A bridge network of this test's own with a subnet of its own, and an
    address on it no container takes unasked: ``(network name, address,
    the networking_config that gives a container that address)``.

    A container stopped and started again on Docker's default bridge gets
    whatever address is free then, and another container created meanwhile
    (anywhere on this machine) may have taken its old one: callers that
    keep its address would then call that one.
    """
    for attempt in range(3):
        # A free subnet as Docker picks one, then taken as the network's own
        # (another network made between the two: the next attempt).
        probe = docker_client.networks.create(f"pt-probe-{uuid.uuid4().hex[:8]}",
                                              driver="bridge")
        try:
            probe.reload()
            subnet = ipaddress.ip_network(probe.attrs["IPAM"]["Config"][0]["Subnet"])
        finally:
            probe.remove()
        try:
            net = docker_client.networks.create(
                f"pt-net-{uuid.uuid4().hex[:8]}", driver="bridge",
                labels={TEST_LABEL: TEST_SESSION},
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                    subnet=str(subnet), iprange=str(next(subnet.subnets(1)))
                )]))
            break
        except docker.errors.APIError:
            if attempt == 2:
                raise
    # Dynamic addresses come from the subnet's lower half; this is above it.
    fixed = str(subnet[-2])
    yield net.name, fixed, {net.name: docker_client.api.create_endpoint_config(
        ipv4_address=fixed)}
    net.reload()
    for c in net.containers:  # this test's, removed before the network
        c.remove(force=True)
    net.remove()


def run_py(containers, volumes, program: str, *args, **kwargs) -> object:
    argv = " ".join(str(a) for a in args)
    return containers.run(f"/usr/bin/python3 /prog/{program} {argv}",
                          volumes=volumes, **kwargs)


def node_of(client, container) -> str | None:
    state = read_state(client, Keys(), ttl=30)
    for host, records in state.containers.items():
        for record in records.values():
            if record.name == container.name:
                return f"container:{host}:{record.id}"
    return None


def serves(client, node: str, port: int) -> bool:
    """Whether the collector reports ``node`` listening on ``port`` now."""
    state = read_state(client, Keys(), ttl=30)
    host, _, cid = node.partition(":")[2].partition(":")
    record = state.containers.get(host, {}).get(cid)
    return record is not None and any(
        p.get("port") == port for p in record.processes)


def entry_of(client, target: str) -> dict:
    verdict = read_verdict(client)
    assert verdict.active, "the analyzer is not running"
    return verdict.statuses.get(target) or {"status": "ok", "reasons": []}


def wait_entry(client, target: str, words: str, statuses=("warning", "critical"),
               timeout: float = TIMEOUT) -> dict | None:
    def seen():
        entry = entry_of(client, target)
        ok = entry["status"] in statuses and any(words in r for r in entry["reasons"])
        return entry if ok else None
    return wait_for(seen, timeout=timeout, interval=0.1)


def map_graph(client, level: str = "container") -> dict:
    """The container level as the map's builder makes it, now."""
    state = read_state(client, Keys(), ttl=30)
    return build_levels(state, read_verdict(client), {})[level].payload()


def command_graph(client, env: dict, level: str = "container") -> dict:
    out = subprocess.run(
        [sys.executable, "manage.py", "graph", "--level", level], cwd=ROOT,
        env=env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def verdicts(payload: dict, targets: list[str]) -> dict:
    """Target -> (status, reasons) in a node-link payload."""
    out = {}
    for n in payload["nodes"]:
        out[n["id"]] = (n["status"], n.get("reasons"), n.get("because_of"))
    for e in payload["links"]:
        out[edge_target(e["source"], e["target"])] = (e["status"], e.get("reasons"))
    return {t: out.get(t) for t in targets}


@contextmanager
def analysis_held(procs: Backend):
    """The analyzer paused (SIGSTOP) after a publication, so what it
    published stays as it is; it goes on after."""
    analyzer = procs.procs["analyzer"]
    client = redis.Redis.from_url(procs.env["REDIS_URL"])
    wait_analyzer_steps(client, 1)
    analyzer.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        analyzer.proc.send_signal(signal.SIGCONT)


def same_moment_match(client, procs: Backend, targets) -> tuple[dict, dict]:
    """The map's and `manage.py graph`'s verdicts on one publication of the
    analysis: read while the analyzer is held, and the map's read the same
    before and after the command (an analysis older than ANALYSIS_FRESH
    reads as no analyzer: then once more)."""
    end = time.monotonic() + TIMEOUT
    while True:
        with analysis_held(procs):
            before = verdicts(map_graph(client), targets)
            command = verdicts(command_graph(client, procs.env), targets)
            after = verdicts(map_graph(client), targets)
        if before == after or time.monotonic() > end:
            return after, command


# ---------------------------------------------------------------- the tests


def test_client_calling_a_port_nothing_serves_is_at_fault(backend, containers,
                                                          programs):
    client, procs = backend
    volumes, _ = programs
    api = run_py(containers, volumes, "server.py", 8080)
    api_node = wait_for(lambda: node_of(client, api), timeout=10)
    assert wait_for(lambda: serves(client, api_node, 8080), timeout=15), \
        "the collector never saw api listening on 8080"
    good = run_py(containers, volumes, "client.py", containers.ip(api), 8080)
    batch = run_py(containers, volumes, "client.py", containers.ip(api), 9999)
    batch_node = wait_for(lambda: node_of(client, batch), timeout=10)
    good_node = wait_for(lambda: node_of(client, good), timeout=10)
    assert batch_node and good_node

    words = f"calls port 9999 on {api.name}, which nothing serves"
    edge = wait_entry(client, edge_target(batch_node, api_node), words)
    assert edge, entry_of(client, edge_target(batch_node, api_node))
    assert wait_entry(client, batch_node, words), entry_of(client, batch_node)
    # The server served its port all along: never red, and says why it is not.
    end = time.monotonic() + 8
    while time.monotonic() < end:
        entry = entry_of(client, api_node)
        assert entry["status"] == "ok", entry
        assert entry_of(client, edge_target(good_node, api_node))["status"] == "ok"
        time.sleep(0.5)
    assert any("nothing serves" in n for n in entry_of(client, api_node)["notes"])
    # (Other containers of this host may be in trouble too: only ours count.)
    ranked = [c["target"] for c in read_verdict(client).causes]
    assert batch_node in ranked and api_node not in ranked, ranked
    procs.assert_alive()


def test_a_service_that_stops_listening_makes_its_server_critical(
        backend, containers, programs):
    client, procs = backend
    volumes, ctl = programs
    server = run_py(containers, volumes, "server.py", 8080, 8081)
    node = wait_for(lambda: node_of(client, server), timeout=10)
    assert wait_for(lambda: serves(client, node, 8081), timeout=15)
    for port in (8080, 8081):
        run_py(containers, volumes, "client.py", containers.ip(server), port)
    # The analyzer saw :8081 served and called before it stops.
    wait_analyzer_steps(client, 3)
    (ctl / "stop-8081").write_text("")
    # Seen after the collector's services refresh (5 s) plus a step or two;
    # how soon is measured by bench/fault_timing.py, not here.
    entry = wait_entry(client, node, "service :8081 stopped listening (was served "
                       "until", statuses=("critical",), timeout=60)
    assert entry, entry_of(client, node)
    assert not any(":8080" in r for r in entry["reasons"])
    procs.assert_alive()


def test_cascade_points_at_the_root_and_recovers_without_flapping(
        backend, fixed_address_net, containers, programs):
    client, procs = backend
    volumes, _ = programs
    net, db_ip, at_db_ip = fixed_address_net
    # db keeps its address when started again (api calls it by address).
    db = run_py(containers, volumes, "server.py", 5432, network=net,
                networking_config=at_db_ip)
    assert containers.ip(db) == db_ip
    api = run_py(containers, volumes, "api.py", 8080, db_ip, 5432, network=net)
    db_node = wait_for(lambda: node_of(client, db), timeout=10)
    api_node = wait_for(lambda: node_of(client, api), timeout=10)
    assert wait_for(lambda: serves(client, api_node, 8080)
                    and serves(client, db_node, 5432), timeout=15)
    front = run_py(containers, volumes, "client.py", containers.ip(api), 8080,
                   network=net)
    front_node = wait_for(lambda: node_of(client, front), timeout=10)
    nodes = [front_node, api_node, db_node]
    targets = [*nodes, edge_target(front_node, api_node),
               edge_target(api_node, db_node)]

    def all_ok():
        return all(entry_of(client, t)["status"] == "ok" for t in targets)

    assert wait_for(all_ok, timeout=TIMEOUT), {
        t: entry_of(client, t) for t in targets}
    wait_analyzer_steps(client, 3)  # judged ok over a few steps, not one
    assert all_ok(), {t: entry_of(client, t) for t in targets}

    db.kill()
    killed = time.monotonic()
    assert wait_entry(client, db_node, "exited", statuses=("critical",),
                      timeout=TIMEOUT), entry_of(client, db_node)
    red_after = time.monotonic() - killed

    def pointed_at_db() -> dict:
        """What is wrong with the chain, as the map shows it (and the
        ranking): db ranked first of the chain, api and front in trouble
        because of db. (Other containers of this host, other tests' among
        them, may be ranked too: the claim is about this chain.)"""
        ours = [c["target"] for c in read_verdict(client).causes
                if c["target"] in nodes]
        graph = {n["id"]: n for n in map_graph(client)["nodes"]}
        return {
            "first of ours": ours[:1],
            "db ranked": (graph[db_node]["likely_cause"],
                          graph[db_node]["cause_rank"] is not None),
            **{graph[n]["name"]: ((graph[n].get("because_of") or {}).get("target"),
                                  graph[n]["status"] in ("warning", "critical"))
               for n in (api_node, front_node)},
        }

    # The edges go red at once, the callers' own warnings after their
    # hysteresis: the whole picture is waited for, then must hold.
    expected = {"first of ours": [db_node], "db ranked": (True, True),
                api.name: (db_node, True), front.name: (db_node, True)}
    assert wait_for(lambda: pointed_at_db() == expected, timeout=TIMEOUT,
                    interval=0.2), pointed_at_db()
    for _ in range(3):  # no blinking while db is down either
        wait_analyzer_steps(client, 1)
        assert pointed_at_db() == expected

    # `manage.py graph` (and /api/graph/, the same service.current_graph)
    # say what the map's builder says.
    shown, command = same_moment_match(client, procs, targets)
    assert shown == command

    db.start()
    restarted = time.monotonic()
    assert containers.ip(db) == db_ip
    assert wait_for(all_ok, timeout=TIMEOUT, interval=0.2), {
        t: entry_of(client, t) for t in targets}
    print(f"red after {red_after:.1f} s, ok after "
          f"{time.monotonic() - restarted:.1f} s")
    # A minute of steady traffic: no blinking.
    end = time.monotonic() + 60
    while time.monotonic() < end:
        bad = {t: entry_of(client, t) for t in targets
               if entry_of(client, t)["status"] != "ok"}
        assert not bad, bad
        time.sleep(0.5)
    shown, command = same_moment_match(client, procs, targets)
    assert shown == command
    assert all(v[0] == "ok" for v in shown.values()), shown
    procs.assert_alive()


def test_without_an_analyzer_the_status_is_unknown(backend, containers, programs):
    client, procs = backend
    volumes, _ = programs
    server = run_py(containers, volumes, "server.py", 8080)
    node = wait_for(lambda: node_of(client, server), timeout=10)
    procs.stop("analyzer")
    try:
        assert wait_for(lambda: not read_verdict(client).active, timeout=15)
        shown = {n["id"]: n for n in map_graph(client)["nodes"]}
        command = {n["id"]: n for n in command_graph(client, procs.env)["nodes"]}
        for graph in (shown, command):
            assert graph[node]["status"] == "unknown"
            assert graph[node]["reasons"] == [NO_ANALYZER]
    finally:
        procs.start("analyzer", [sys.executable, "manage.py", "analyze"])
    assert wait_for(lambda: read_verdict(client).active, timeout=15)
