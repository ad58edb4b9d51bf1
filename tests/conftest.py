"""Shared fixtures: a real Redis, a real Docker engine, a local test image.

Under ``CI=true`` a missing prerequisite fails the test instead of skipping it,
so a green CI always means the eBPF, Docker, Redis and browser tests ran.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_LABEL = "portolan.test"
# Each test session labels its containers with its own id and removes only
# those, so sessions running side by side leave each other's containers alone.
TEST_SESSION = uuid.uuid4().hex[:12]
BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = (
    "sh", "nc", "httpd", "wget", "sleep", "cat", "echo", "ls", "seq", "true",
    "ps", "head", "dd", "yes", "kill", "mkdir", "rm", "printf", "env", "test",
    "timeout", "nslookup", "ip", "ifconfig", "grep", "wc", "date", "usleep",
)
TEST_FILES = (
    ("etc/passwd", "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ("var/www/index.html", "portolan test page\n"),
)
# The tag names what is in the image, so a changed recipe builds a new one.
TEST_IMAGE = "portolan-test:busybox-" + hashlib.sha256(
    repr((BUSYBOX_APPLETS, TEST_FILES)).encode()
).hexdigest()[:10]
# The host's programs (python3, wrk) run in test containers from its own
# /usr, /lib and /lib64, read-only: the busybox image has no interpreter.
HOST_PROGRAM_MOUNTS = {
    p: {"bind": p, "mode": "ro"} for p in ("/usr", "/lib", "/lib64")
}


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; in CI, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and prerequisite missing: {reason}")
    pytest.skip(reason)


def channel_layers(url: str, prefix: str = "portolan-test",
                   backend: str = "channels_redis.core.RedisChannelLayer") -> dict:
    """Django's ``CHANNEL_LAYERS``: channels_redis (or ``backend``) on ``url``."""
    return {"default": {"BACKEND": backend,
                        "CONFIG": {"hosts": [url], "prefix": prefix}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    return last


# ---------------------------------------------------------------- Redis


SHIPPED_REDIS_CONF = Path(__file__).resolve().parent.parent / "deploy/redis.conf"


class RedisServer:
    """A throwaway redis-server on a free loopback port: stock settings, or
    those of ``config`` (e.g. ``SHIPPED_REDIS_CONF``, Redis as Portolan ships
    it, for benchmarks of its memory)."""

    def __init__(self, config: Path | None = None):
        self.config = config
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="portolan-redis-")
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                *([str(self.config)] if self.config else []),
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        ok = wait_for(lambda: _ping(client), timeout=10)
        client.close()
        if not ok:
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "not up yet"
        return False


@pytest.fixture(scope="session")
def redis_server():
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    server = RedisServer()
    server.start()
    os.environ["REDIS_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def live_redis(settings, redis_client, redis_server):
    """Point the web tier at the test Redis (emptied) for one test."""
    from webapp.topology import service

    settings.REDIS_URL = redis_server.url
    service.redis_client.cache_clear()
    yield redis_server
    service.redis_client.cache_clear()


class RedisClusterServers:
    """Three masters and three replicas on free loopback ports (Redis Cluster),
    with stock settings or those of ``config`` as ``RedisServer``."""

    def __init__(self, size: int = 6, config: Path | None = None):
        self.config = config
        self.ports = [free_port() for _ in range(size)]
        # The bus port is set: the default (port + 10000) may be taken or too high.
        self.bus_ports = [free_port() for _ in range(size)]
        self.dir = tempfile.mkdtemp(prefix="portolan-cluster-")
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            self.procs[port] = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server",
                 *([str(self.config)] if self.config else []), "--port", str(port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self.dir, "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-port", str(bus),
                 # A quick failover, by any replica however stale.
                 "--cluster-node-timeout", "1000",
                 "--cluster-replica-validity-factor", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        for port in self.ports:
            if not wait_for(lambda p=port: _ping(redis.Redis(port=p)), timeout=10):
                raise RuntimeError(f"cluster node on port {port} did not start")
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60)
        if not wait_for(self.healthy, timeout=30, interval=0.2):
            raise RuntimeError("the cluster never reached cluster_state:ok")

    def info(self, port: int) -> dict:
        import redis

        client = redis.Redis(port=port, socket_timeout=2)
        try:
            return client.cluster("info")
        finally:
            client.close()

    def healthy(self) -> bool:
        """cluster_state:ok on every running node, every slot served, and
        every replica in sync with its master."""
        import redis

        try:
            for port, proc in self.procs.items():
                if proc.poll() is not None:
                    continue
                info = self.info(port)
                if (info.get("cluster_state") != "ok"
                        or int(info.get("cluster_slots_ok", 0)) != 16384):
                    return False
                client = redis.Redis(port=port, socket_timeout=2)
                role = client.info("replication")
                client.close()
                if (role["role"] == "slave"
                        and role.get("master_link_status") != "up"):
                    return False
        except Exception:  # noqa: BLE001 - a node still starting
            return False
        return True

    def masters(self) -> list[int]:
        """Ports of the running masters that serve slots."""
        import redis

        out = []
        for port, proc in self.procs.items():
            if proc.poll() is None:
                client = redis.Redis(port=port, socket_timeout=2)
                if client.info("replication")["role"] == "master":
                    out.append(port)
                client.close()
        return out

    def crossslot_errors(self) -> int:
        """CROSSSLOT refusals counted by the running nodes since they started."""
        import redis

        total = 0
        for port, proc in self.procs.items():
            if proc.poll() is None:
                client = redis.Redis(port=port, socket_timeout=2)
                stat = client.info("errorstats").get("errorstat_CROSSSLOT") or {}
                total += int(stat.get("count", 0))
                client.close()
        return total

    def flushall(self) -> None:
        import redis

        for port in self.masters():
            redis.Redis(port=port).flushall()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster():
    require(shutil.which("redis-server") is not None
            and shutil.which("redis-cli") is not None, "redis-server not installed")
    cluster = RedisClusterServers()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def redis_backend(request):
    """``(url, client)`` of one Redis or of the cluster, emptied; no CROSSSLOT."""
    from collector.redis_client import redis_client as make_client

    server = request.getfixturevalue(
        "redis_server" if request.param == "single" else "redis_cluster")
    if request.param == "cluster":
        server.flushall()
        crossslot = server.crossslot_errors()
    client = make_client(server.url)
    if request.param == "single":
        client.flushall()
    yield server.url, client
    client.close()
    if request.param == "cluster":
        assert server.crossslot_errors() == crossslot, "a command went cross-slot"


# ---------------------------------------------------------------- Docker


def _docker_ping():
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - any failure means "no engine yet"
        return None


def ensure_dockerd():
    """Return a Docker client, starting dockerd first if none answers."""
    client = _docker_ping()
    if client:
        return client
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        return None
    # Started through a shell that exits at once, so dockerd is nobody's child
    # here: a test that stops it sees it gone, not left as our zombie.
    subprocess.run(
        ["sh", "-c", "setsid dockerd >>/tmp/portolan-dockerd.log 2>&1 </dev/null &"],
        check=True,
    )
    return wait_for(_docker_ping, timeout=60, interval=0.5)


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def build_test_image(client) -> str:
    """Import a one-file busybox userland as a local image (nothing is pulled)."""
    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except Exception:  # noqa: BLE001, S110 - docker.errors.ImageNotFound
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "var/www"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in TEST_FILES:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(
        ["docker", "import", "-", TEST_IMAGE], input=buf.getvalue(), check=True,
        capture_output=True,
    )
    return TEST_IMAGE


@pytest.fixture(scope="session")
def docker_client():
    require(os.path.exists(BUSYBOX), "busybox-static not installed")
    client = ensure_dockerd()
    require(client is not None, "no Docker engine and cannot start dockerd")
    build_test_image(client)
    yield client
    session_label = f"{TEST_LABEL}={TEST_SESSION}"
    for c in client.containers.list(all=True, filters={"label": session_label}):
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001, S110 - best-effort cleanup
            pass


@pytest.fixture
def watcher(docker_client):
    """A DockerWatcher on the local engine, synced with it."""
    from collector.docker_events import DockerWatcher

    w = DockerWatcher(backoff_max=2.0).start()
    assert w.wait_synced(30), f"watcher never synced: {w.last_error}"
    yield w
    w.close()


@pytest.fixture
def containers(docker_client):
    """Start test containers: ``containers.run(cmd, **kwargs)``; all removed after."""

    class Factory:
        def __init__(self):
            self.started = []

        def run(self, command, name=None, **kwargs):
            labels = {TEST_LABEL: TEST_SESSION, **kwargs.pop("labels", {})}
            name = name or f"pt-{uuid.uuid4().hex[:8]}"
            c = docker_client.containers.run(
                TEST_IMAGE, ["sh", "-c", command], name=name, detach=True,
                labels=labels, **kwargs,
            )
            self.started.append(c)
            c.reload()
            return c

        def ip(self, container) -> str:
            container.reload()
            nets = container.attrs["NetworkSettings"]["Networks"]
            return next(iter(nets.values()))["IPAddress"]

    factory = Factory()
    yield factory
    for c in factory.started:
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass


# ---------------------------------------------------------------- kernel


def cgroup_id_of(container) -> int:
    """The v2 cgroup id (directory inode) of a running container's init process."""
    from collector.cgroups import find_cgroup2_mount, parse_proc_cgroup

    container.reload()
    pid = container.attrs["State"]["Pid"]
    path = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())[""]
    root = find_cgroup2_mount(Path("/proc/self/mountinfo").read_text())
    return os.stat(root + path.rstrip("/")).st_ino


def ebpf_unavailable_reason() -> str | None:
    """Why bcc tracepoint programs cannot load here, or None if they can."""
    from collector.ebpf.support import ebpf_unavailable_reason as reason

    return reason()


@pytest.fixture(scope="session")
def ebpf_ready():
    reason = ebpf_unavailable_reason()
    require(reason is None, f"eBPF unavailable: {reason}")


def wait_collector_in_ebpf_mode(client, host_id: str, process=None,
                                timeout: float = 60, keys=None):
    """The host record of ``host_id`` once its collector reported, asserted
    to be in eBPF mode: the collector falls back to /proc quietly, and most
    tests that rely on eBPF would pass on the fallback. ``process`` (a
    ``tests.processes.LoggedProcess``) is checked alive, its log in the message."""
    from collector.schema import HostRecord, Keys

    keys = keys or Keys()
    where = f"; {process.describe()}" if process is not None else ""

    def reported():
        if process is not None and not process.alive:
            return "dead"
        return client.zscore(keys.collectors, host_id) and client.get(
            keys.host(host_id))

    raw = wait_for(reported, timeout=timeout, interval=0.2)
    assert raw and raw != "dead", (
        f"collector {host_id} never reported within {timeout} s{where}")
    host = HostRecord.from_json(raw)
    assert host.mode == "ebpf", (
        f"collector {host_id} runs in {host.mode!r} mode, not eBPF: "
        f"{host.mode_reason or 'no reason given'}{where}")
    return host


@contextmanager
def collector_reporting(name: str, argv, redis_url: str, host_id: str, var_dir,
                        repo_root: Path, **env):
    """A collector (``argv`` run by this python, ``env`` added to its
    environment) reporting as ``host_id`` every 0.5 s: yields a client of its
    Redis once it reports in eBPF mode, and asserts it still alive at the end
    of the block, before it is stopped."""
    import redis

    from tests.processes import LoggedProcess

    env = dict(os.environ, REDIS_URL=redis_url, PORTOLAN_HOST_ID=host_id,
               PORTOLAN_VAR_DIR=str(var_dir), PORTOLAN_INTERVAL="0.5", **env)
    client = redis.Redis.from_url(redis_url)
    try:
        with LoggedProcess(name, [sys.executable, *argv], cwd=repo_root,
                           env=env) as proc:
            wait_collector_in_ebpf_mode(client, host_id, proc)
            yield client
            proc.assert_alive("the collector died during the module")
    finally:
        client.close()


def write_programs(root: Path, programs: dict[str, str]) -> Path:
    """``root`` holding ``programs`` (file name -> text), readable by all:
    test processes and containers run them from there."""
    for name, text in programs.items():
        (root / name).write_text(text)
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Ctrl-C as on a terminal, even where the suite was started in the background.

    A shell starts a background job with SIGINT ignored and its children inherit
    that, so the tests' own Ctrl-C to what they start (``make run``, the demo, a
    capture) would do nothing there and they would fail for no fault of the code.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session, exitstatus):
    """Under CI, any skipped test turns the run red: a skip hides a missing part."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped; failing the run",
                            red=True)
        session.exitstatus = 1
