"""Real faults in real containers turn the map red for a stated reason.

The whole back end runs as users run it: `python -m collector` (eBPF, Docker,
cgroups) and `manage.py analyze` (rules, status, likely cause, webhook) against
one Redis; a webhook receiver listens on loopback. Each test waits for its
fault to show with a generous timeout (SEEN_WITHIN, 30 s) and asserts on what
showed: on a loaded 2-core machine a tight bound fails for no fault of the
code, and how fast a fault shows is for bench/.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from collector.schema import Keys
from tests.conftest import (
    HOST_PROGRAM_MOUNTS,
    RedisServer,
    free_port,
    wait_collector_in_ebpf_mode,
    wait_for,
)
from tests.processes import LoggedProcess
from webapp.anomalies.keys import AnalysisKeys, edge_target
from webapp.anomalies.merge import read_analysis
from webapp.topology.graph import build_graph
from webapp.topology.store import read_state

pytestmark = [pytest.mark.ebpf, pytest.mark.docker]

HOST = "faults-host"
SEEN_WITHIN = 30.0


class Webhook:
    """A loopback HTTP receiver that records every POSTed JSON body."""

    def __init__(self):
        self.bodies = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_target(self, target):
        return [b for b in self.bodies if b.get("target") == target]

    def close(self):
        self.server.shutdown()


class AnalyzerProcess(LoggedProcess):
    """`manage.py analyze`, whose log also says whether a check (or step)
    failed: a dead or failing analyzer would otherwise read as all green."""

    def __init__(self, cwd):
        super().__init__("test_faults-analyzer",
                         [sys.executable, "manage.py", "analyze"], cwd=cwd)

    def start_with(self, env: dict) -> LoggedProcess:
        """Start it in the back end's environment, logging at INFO."""
        self.env = {**env, "LOG_LEVEL": "INFO"}
        return self.start()

    def assert_healthy(self):
        self.assert_alive("the analyzer exited")
        failures = [line for line in self.output().splitlines()
                    if " ERROR portolan.anomalies" in line]
        assert not failures, (
            f"the analyzer logged {len(failures)} failures, the first: "
            f"{failures[0]}; {self.log_path} ends:\n{self.tail()}")


@pytest.fixture(scope="module")
def analyzer_process(repo_root):
    return AnalyzerProcess(repo_root)


@pytest.fixture(scope="module")
def backend(docker_client, ebpf_ready, tmp_path_factory, repo_root,
            analyzer_process):
    server = RedisServer()
    server.start()
    hook = Webhook()
    env = dict(
        os.environ, REDIS_URL=server.url, PORTOLAN_HOST_ID=HOST,
        PORTOLAN_VAR_DIR=str(tmp_path_factory.mktemp("var")),
        PORTOLAN_INTERVAL="0.5", PORTOLAN_WEBHOOK_URL=hook.url,
        PORTOLAN_ANOMALY_INTERVAL="0.5",
        # Learn baselines within the test's time, so that they are judged too.
        PORTOLAN_ANOMALY_WARMUP_SECONDS="5", PORTOLAN_ANOMALY_WARMUP_SAMPLES="5",
        # A CI machine loaded by other jobs is not the fault under test: its
        # host must not outrank a stopped server as the likely cause.
        PORTOLAN_ANOMALY_HOST_LOAD_PER_CPU="1000",
    )
    collector = LoggedProcess("test_faults-collector",
                              [sys.executable, "-m", "collector"], cwd=repo_root,
                              env=env).start()
    analyzer_process.start_with(env)
    client = redis.Redis.from_url(server.url)
    try:
        wait_collector_in_ebpf_mode(client, HOST, collector)
        yield client, hook, collector
        collector.assert_alive("the collector died during the module")
        analyzer_process.assert_healthy()  # through every test of the module
    finally:
        collector.stop()
        analyzer_process.stop()
        hook.close()
        server.stop()


@pytest.fixture(autouse=True)
def processes_still_run(backend, analyzer_process):
    """After each test: the collector and the analyzer still run, and no check
    failed, so that a test's green is not a dead process's silence."""
    yield
    backend[2].assert_alive("the collector died during the test")
    analyzer_process.assert_healthy()


def node_id_of(client, name):
    state = read_state(client, Keys(), ttl=30)
    for host, containers in state.containers.items():
        for record in containers.values():
            if record.name == name:
                return f"container:{host}:{record.id}"
    return None


def analysis_of(client, target):
    statuses, causes = read_analysis(client, "portolan")
    return statuses.get(target), causes


def analyzer_step_time(client):
    """When the analyzer last published (its causes' ts), or None."""
    raw = client.get(AnalysisKeys("portolan").causes)
    return json.loads(raw)["ts"] if raw else None


def wait_analyzer_steps(client, steps=5, timeout=60):
    """Until the analyzer has published ``steps`` more times: the positive
    sign that a window has passed in which anything else would have shown."""
    seen = [analyzer_step_time(client)]

    def stepped():
        ts = analyzer_step_time(client)
        if ts != seen[-1]:
            seen.append(ts)
        return len(seen) > steps

    assert wait_for(stepped, timeout=timeout, interval=0.1), (
        f"the analyzer published {len(seen) - 1} of {steps} steps in {timeout} s")


def wait_reason(client, target, words, timeout=SEEN_WITHIN,
                statuses=("warning", "critical")):
    """The target's analysis once it is in one of ``statuses`` for ``words``."""
    def seen():
        entry, _ = analysis_of(client, target)
        if entry and entry["status"] in statuses and any(
            words in reason for reason in entry["reasons"]
        ):
            return entry
        return None

    return wait_for(seen, timeout=timeout, interval=0.1)


def test_oom_kill_goes_red_and_notifies_once(backend, containers):
    client, hook, _ = backend
    # The init only sleeps, so the OOM killer cannot take the container with
    # it; the exec'd tail buffers 100 MiB (no newline) against a 32 MiB limit.
    c = containers.run("sleep 120", mem_limit="32m", memswap_limit="32m")
    node = wait_for(lambda: node_id_of(client, c.name), timeout=SEEN_WITHIN)
    assert node
    c.exec_run(["sh", "-c", "head -c 100m /dev/zero | tail"], detach=True)
    entry = wait_reason(client, node, "OOM killed")
    assert entry and entry["status"] == "critical", analysis_of(client, node)
    wait_analyzer_steps(client, 6)  # a storm would show by now
    changes = hook.for_target(node)
    assert [(b["from"], b["to"]) for b in changes] == [("ok", "critical")]


def test_stopped_server_is_ranked_the_cause_of_refused_connections(
    backend, containers, repo_root
):
    client, hook, _ = backend
    port = free_port()
    server = containers.run("httpd -f -p 80 -h /var/www",
                            ports={"80/tcp": ("127.0.0.1", port)})
    # Clients on the host's network reach the server through its published port
    # (host python: busybox's static wget crashes in the host's namespace).
    loop = (
        "import socket, time\n"
        "while True:\n"
        "    try:\n"
        f"        s = socket.create_connection(('127.0.0.1', {port}), 2)\n"
        "        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); s.recv(64); s.close()\n"
        "    except OSError:\n"
        "        pass\n"
        "    time.sleep(0.1)\n"
    )
    clients = [
        containers.run(f"/usr/bin/python3 -c \"{loop}\"", network_mode="host",
                       volumes=HOST_PROGRAM_MOUNTS)
        for _ in range(2)
    ]
    server_node = wait_for(lambda: node_id_of(client, server.name), timeout=SEEN_WITHIN)
    client_nodes = [
        wait_for(lambda c=c: node_id_of(client, c.name), timeout=SEEN_WITHIN)
        for c in clients]

    def edges_live():
        G = build_graph(read_state(client, Keys(), ttl=30), "container")
        return all(G.has_edge(n, server_node) for n in client_nodes)

    assert wait_for(edges_live, timeout=SEEN_WITHIN), "client edges never appeared"
    time.sleep(2)  # a few more successful connects before the server goes
    server.kill()

    for node in client_nodes:
        # Warning while the last 10 s still hold connects from before the
        # kill; critical once none succeeds.
        entry = wait_reason(client, edge_target(node, server_node),
                            "connection refused", statuses=("critical",))
        assert entry and entry["status"] == "critical", analysis_of(
            client, edge_target(node, server_node))

    def ranked_first():
        _, causes = analysis_of(client, None)
        return causes and causes[0]["target"] == server_node and causes

    causes = wait_for(ranked_first, timeout=SEEN_WITHIN, interval=0.1)
    assert causes, ("the stopped server was not ranked first: "
                    + json.dumps(analysis_of(client, None)[1], indent=1)[:3000])
    assert hook.for_target(server_node), "no notification for the stopped server"


def test_crash_loop_shows_its_restart_loop(backend, containers):
    client, _, _ = backend
    c = containers.run("usleep 200000; exit 1", restart_policy={"Name": "always"})
    node = wait_for(lambda: node_id_of(client, c.name), timeout=SEEN_WITHIN)
    entry = wait_reason(client, node, "restart loop")
    assert entry and entry["status"] == "critical"


def test_cpu_hog_at_its_limit_shows_throttling(backend, containers):
    client, _, _ = backend
    c = containers.run("yes > /dev/null", nano_cpus=200_000_000)
    node = wait_for(lambda: node_id_of(client, c.name), timeout=SEEN_WITHIN)
    entry = wait_reason(client, node, "CPU throttled")
    assert entry, analysis_of(client, node)


CHAIN_SERVER = """
import socket, sys, threading
port, upstream = int(sys.argv[1]), sys.argv[2:]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port)); ls.listen(128)
def handle(conn):
    with conn:
        conn.recv(64)
        if upstream:
            with socket.create_connection((upstream[0], int(upstream[1])), 5) as up:
                up.sendall(b"q"); up.recv(64)
        conn.sendall(b"ok")
while True:
    conn, _ = ls.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""

CHAIN_CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
while True:
    with socket.create_connection((host, port), 5) as s:
        s.sendall(b"q"); s.recv(64)
    time.sleep(0.05)
"""


def test_healthy_three_tier_chain_stays_green(backend, containers, tmp_path,
                                              analyzer_process):
    client, hook, _ = backend
    (tmp_path / "server.py").write_text(CHAIN_SERVER)
    (tmp_path / "client.py").write_text(CHAIN_CLIENT)
    vols = {**HOST_PROGRAM_MOUNTS, str(tmp_path): {"bind": "/chain", "mode": "ro"}}
    py = "/usr/bin/python3 /chain/"
    db = containers.run(f"{py}server.py 5432", volumes=vols)
    api = containers.run(f"{py}server.py 8080 {containers.ip(db)} 5432", volumes=vols)
    front = containers.run(f"{py}client.py {containers.ip(api)} 8080", volumes=vols)
    nodes = [wait_for(lambda c=c: node_id_of(client, c.name), timeout=SEEN_WITHIN)
             for c in (front, api, db)]
    targets = nodes + [edge_target(nodes[0], nodes[1]), edge_target(nodes[1], nodes[2])]

    def chain_edges():
        G = build_graph(read_state(client, Keys(), ttl=30), "container")
        return (G.has_edge(nodes[0], nodes[1]) and G.has_edge(nodes[1], nodes[2])
                and G.edges[nodes[0], nodes[1]]["connections"] > 0)

    assert wait_for(chain_edges, timeout=SEEN_WITHIN), "the chain never showed"
    end = time.monotonic() + 20  # past the baselines' warm-up
    while time.monotonic() < end:
        statuses, _ = read_analysis(client, "portolan")
        red = {t: statuses[t] for t in targets if t in statuses}
        assert not red, f"false positive on a healthy chain: {red}"
        G = build_graph(read_state(client, Keys(), ttl=30), "container")
        assert all(G.nodes[n]["status"] == "ok" for n in nodes)
        time.sleep(0.5)
    assert not any(hook.for_target(t) for t in targets)
    analyzer_process.assert_healthy()  # green, not blind: no check failed
