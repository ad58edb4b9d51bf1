"""The graph builder as processes: kill -9 and a standby takes over; two Daphne
workers behind one Redis relay the same diffs."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from collector.reporter import HostReport, RedisReporter
from collector.reporter import redis_client as reporter_client
from collector.schema import ContainerRecord, HostRecord, Keys
from tests.conftest import free_port, wait_for
from webapp.builder.keys import GraphKeys

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOST = "takeover-h1"
USER, PASSWORD = "admin", "pw-for-builder-tests-1"


class Reporting(threading.Thread):
    """A collector adding one container per report, every ``interval`` s."""

    def __init__(self, url: str, interval: float = 0.3):
        super().__init__(daemon=True)
        self.reporter = RedisReporter(reporter_client(url), Keys("portolan"))
        self.interval = interval
        self.containers: list[ContainerRecord] = []
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            n = len(self.containers)
            self.containers.append(ContainerRecord(id=f"c{n}", name=f"pt-{n}",
                                                   state="running"))
            self.reporter.report(HostReport(host=HostRecord(id=HOST),
                                            containers=list(self.containers),
                                            flows=Counter()))
            self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.join(5)
        self.reporter.client.close()


@pytest.fixture
def web_env(redis_server, redis_client, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "REDIS_URL": redis_server.url,
        "CHANNEL_REDIS_URL": redis_server.url,
        "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
        "PORTOLAN_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SUPERUSER_USERNAME": USER,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "admin@example.invalid",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput"], ["createsuperuser", "--noinput"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    return env


class Processes:
    def __init__(self, env, log_dir: Path):
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def builder(self, name: str) -> subprocess.Popen:
        return self.start(name, sys.executable, str(ROOT / "manage.py"), "builder",
                          "--lease-ttl", "2")

    def daphne(self, name: str) -> int:
        port = free_port()
        self.start(name, str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p",
                   str(port), "webapp.asgi:application")
        return port

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def procs(web_env, tmp_path):
    p = Processes(web_env, tmp_path)
    yield p
    p.stop()
    for log in tmp_path.glob("*.log"):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def session_cookie(env) -> str:
    """A session of the admin user, made in the workers' database."""
    code = ("from django.contrib.auth import get_user_model;"
            "from django.test import Client;"
            "c = Client();"
            "c.force_login(get_user_model().objects.get(username='admin'));"
            "print(c.cookies['sessionid'].value)")
    out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c",
                          code],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return f"sessionid={out.stdout.strip().splitlines()[-1]}"


async def _read_frame(reader) -> tuple[bool, int, bytes]:
    head = await reader.readexactly(2)
    fin, opcode, length = bool(head[0] & 0x80), head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return fin, opcode, await reader.readexactly(length)


async def open_map(port: int, cookie: str, level: str = "container",
                   decode: bool = True):
    """A minimal WebSocket client on the map socket (text frames from the
    server, which never masks): its queue of (time received, message), the
    message undecoded (bytes) unless ``decode``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((
        f"GET /ws/topology/?level={level} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
    ).encode())
    status = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in status.split(b"\r\n")[0], status
    messages: asyncio.Queue = asyncio.Queue()

    async def pump():
        parts = []
        while True:
            fin, opcode, data = await _read_frame(reader)
            if opcode == 8:
                return
            parts.append(data)
            if fin and opcode in (0, 1):  # a whole text message
                body = b"".join(parts)
                messages.put_nowait((time.monotonic(),
                                     json.loads(body) if decode else body))
                parts = []

    task = asyncio.create_task(pump())
    return (writer, task), messages


def close_map(handle) -> None:
    writer, task = handle
    task.cancel()
    writer.close()


async def next_message(queue, timeout: float):
    return await asyncio.wait_for(queue.get(), timeout)


def active_builder_pid(redis_client) -> int | None:
    owner = redis_client.get(GraphKeys("portolan").lock)
    return int(owner.decode().split(":")[1]) if owner else None


def healthy(port: int) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                      timeout=1).status == 200
    except OSError:
        return False


async def test_a_killed_builder_is_replaced_and_open_maps_get_diffs_again(
        procs, redis_server, redis_client):
    first, second = procs.builder("builder-a"), procs.builder("builder-b")
    port = procs.daphne("daphne")
    assert wait_for(lambda: healthy(port), timeout=30)
    reporting = Reporting(redis_server.url)
    reporting.start()
    transport = None
    try:
        assert wait_for(lambda: active_builder_pid(redis_client), timeout=15)
        cookie = session_cookie(procs.env)
        transport, messages = await open_map(port, cookie)
        # Wait for the snapshot, then for diffs to flow.
        while (await next_message(messages, 10))[1]["type"] != "snapshot":
            pass
        _, diff = await next_message(messages, 5)
        assert diff["type"] == "diff"
        active = active_builder_pid(redis_client)
        assert active in (first.pid, second.pid)
        os.kill(active, signal.SIGKILL)
        killed = time.monotonic()
        while not messages.empty():
            messages.get_nowait()
        # The standby takes over: diffs again within 5 s, and no new snapshot
        # (nor error) meanwhile or after.
        seen = []
        while True:
            at, message = await next_message(messages, 8)
            seen.append(message["type"])
            assert message["type"] == "diff", seen
            if at - killed > 0.5 and active_builder_pid(redis_client) != active:
                break
        assert at - killed < 5.0, f"diffs resumed after {at - killed:.1f} s"
        # Still continuous: the next ones are diffs too.
        for _ in range(3):
            assert (await next_message(messages, 3))[1]["type"] == "diff"
        assert active_builder_pid(redis_client) in (first.pid, second.pid)
    finally:
        reporting.stop()
        if transport is not None:
            close_map(transport)


async def test_two_daphne_workers_send_the_same_diffs(procs, redis_server,
                                                      redis_client):
    procs.builder("builder")
    ports = [procs.daphne("daphne-1"), procs.daphne("daphne-2")]
    for port in ports:
        assert wait_for(lambda p=port: healthy(p), timeout=30)
    assert wait_for(lambda: active_builder_pid(redis_client), timeout=15)
    reporting = Reporting(redis_server.url, interval=0.5)
    reporting.start()
    transports = []
    try:
        queues = []
        for port in ports:
            transport, messages = await open_map(port, session_cookie(procs.env))
            transports.append(transport)
            queues.append(messages)
        # Each client: its snapshot, then diffs; collect the names they add.
        added: list[list[str]] = [[], []]
        for queue in queues:
            while (await next_message(queue, 10))[1]["type"] != "snapshot":
                pass
        deadline = time.monotonic() + 4
        diffs: list[list[dict]] = [[], []]
        while time.monotonic() < deadline:
            for i, queue in enumerate(queues):
                while not queue.empty():
                    _, message = queue.get_nowait()
                    assert message["type"] == "diff"
                    diffs[i].append(message)
                    added[i] += [n["name"] for n in message["added_nodes"]]
            await asyncio.sleep(0.1)
        # Both saw diffs, and the same ones from the first diff both hold on.
        assert len(added[0]) >= 3 and len(added[1]) >= 3
        common = set(added[0]) & set(added[1])
        start = min(common, key=lambda n: int(n.split("-")[1]))
        tail = [d[next(i for i, m in enumerate(d) if any(
            n["name"] == start for n in m["added_nodes"])):] for d in diffs]
        n = min(len(tail[0]), len(tail[1]))
        assert n >= 2 and tail[0][:n] == tail[1][:n]
    finally:
        reporting.stop()
        for transport in transports:
            close_map(transport)
