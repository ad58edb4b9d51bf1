"""Several web workers on one accounts database (DATABASE_URL, PostgreSQL).

Two real Daphne workers with the same DATABASE_URL and the same Redis, each
with a var/ of its own (as two replicas with an emptyDir are): a login, an
API token, a password change and a lockout made on one worker hold on the
other. The database is a real PostgreSQL cluster started for these tests;
``manage.py preparedb`` (what the deployments run at start) migrates it
under a lock, so replicas starting together do not migrate twice at once.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.integration.test_builder import close_map, healthy, next_message, open_map
from tests.integration.test_web_auth import write_host
from tests.postgres import started_postgres
from tests.processes import LoggedProcess
from webapp.accounts.db_lock import PREPARE_LOCK_ID
from webapp.accounts.ended_logins import GROUP

ENDED_LOGINS_GROUP = f"portolan-channels:group:{GROUP}"  # channels_redis' key

ROOT = Path(__file__).resolve().parents[2]
DAPHNE = Path(sys.executable).parent / "daphne"
ADMIN_PASSWORD = "admin-pw-for-shared-db-1"
VIEWER, VIEWER_PASSWORD = "vera", "vera-pw-for-shared-db-1"
FAILURE_LIMIT = 3


@pytest.fixture(scope="module")
def postgres():
    server = started_postgres()
    yield server
    server.stop()


@pytest.fixture
def shared_env(postgres, redis_server, redis_client, tmp_path):
    """What every worker of one deployment shares: the database, Redis, the
    secret key; not var/."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_PATH"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "DATABASE_URL": postgres.new_database(),
        "REDIS_URL": redis_server.url,
        "CHANNEL_REDIS_URL": redis_server.url,
        "SECRET_KEY": "shared-secret-key-for-the-shared-db-tests-" + "x" * 20,
        "PORTOLAN_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PORTOLAN_LOGIN_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "PORTOLAN_VAR_DIR": str(tmp_path / "var-setup"),
    })
    return env


def worker_env(shared_env, var_dir: Path) -> dict:
    return {**shared_env, "PORTOLAN_VAR_DIR": str(var_dir)}


def manage(env, *argv, name="manage") -> LoggedProcess:
    return LoggedProcess(name, [sys.executable, ROOT / "manage.py", *argv],
                         cwd=ROOT, env=env)


def run_manage(env, *argv) -> str:
    proc = manage(env, *argv, name=f"manage-{argv[0]}").start()
    assert proc.wait(120) == 0, proc.describe()
    return proc.output()


class Browser:
    """One browser's cookies (a requests session), sent to whichever worker
    ``on(port)`` names, as a load balancer without sticky sessions would."""

    def __init__(self, session: requests.Session | None = None, port: int = 0):
        self.session = session or requests.Session()
        self.port = port

    def on(self, port: int) -> Browser:
        return Browser(self.session, port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url(path), allow_redirects=False, timeout=10,
                                **kwargs)

    def post(self, path: str, data: dict) -> requests.Response:
        if "csrftoken" not in self.session.cookies:
            self.get("/login/")
        form = {**data, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]}
        return self.session.post(self.url(path), data=form, allow_redirects=False,
                                 timeout=10)

    def log_in(self, username: str, password: str) -> requests.Response:
        self.get("/login/")
        return self.post("/login/", {"username": username, "password": password})

    @property
    def cookie_header(self) -> str:
        return f"sessionid={self.session.cookies['sessionid']}"


def logged_in(response: requests.Response) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/"


def to_login(response: requests.Response) -> bool:
    return (response.status_code == 302
            and response.headers["Location"].startswith("/login/"))


async def socket_status(port: int, cookie: str) -> int:
    """The HTTP status Daphne answers a map socket's handshake with (101:
    accepted), read before anything else is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((
        "GET /ws/topology/?level=host HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n").encode())
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status.split()[1])


@pytest.fixture
def workers(shared_env, tmp_path):
    """(port A, port B): two Daphne workers and the graph builder on the
    shared database, prepared as the deployments do (``preparedb``)."""
    run_manage(shared_env, "preparedb")
    procs = [manage(shared_env, "builder", "--lease-ttl", "2",
                    name="shared-db-builder").start()]
    ports = []
    for name in ("a", "b"):
        port = free_port()
        env = worker_env(shared_env, tmp_path / f"var-{name}")
        procs.append(LoggedProcess(
            f"shared-db-daphne-{name}",
            [DAPHNE, "-b", "127.0.0.1", "-p", port, "webapp.asgi:application"],
            cwd=ROOT, env=env).start())
        ports.append(port)
    try:
        for port, proc in zip(ports, procs[1:], strict=True):
            assert wait_for(lambda p=port: healthy(p), timeout=30), proc.describe()
        yield tuple(ports)
        for proc in procs:
            proc.assert_alive("after the test")
    finally:
        for proc in procs:
            proc.stop()


async def test_logins_tokens_password_changes_and_lockouts_hold_on_every_worker(
        shared_env, workers, redis_server, redis_client):
    port_a, port_b = workers
    # Each worker has its own var/ and nothing of the accounts in it.
    for name in ("a", "b"):
        var = Path(shared_env["PORTOLAN_VAR_DIR"]).parent / f"var-{name}"
        assert not (var / "portolan.sqlite3").exists()
    create_viewer = ("from django.contrib.auth import get_user_model; "
                     f"get_user_model().objects.create_user({VIEWER!r}, "
                     f"password={VIEWER_PASSWORD!r})")
    run_manage(shared_env, "shell", "-c", create_viewer)
    write_host(redis_server.url, host="shared-db-h1")

    # A user made by manage.py logs in on A; the same cookie is a login on B:
    # the map page, the graph API and the map's socket with its snapshot.
    browser = Browser()
    a, b = browser.on(port_a), browser.on(port_b)
    assert logged_in(a.log_in(VIEWER, VIEWER_PASSWORD))
    page = b.get("/")
    assert page.status_code == 200 and "portolan-config" in page.text
    assert b.get("/api/graph/", params={"level": "host"}).status_code == 200
    transport, messages = await open_map(port_b, browser.cookie_header, level="host")
    try:
        deadline = time.monotonic() + 20
        while True:
            _, message = await next_message(messages, deadline - time.monotonic())
            if message["type"] == "snapshot":
                break
        assert "host:shared-db-h1" in {n["id"] for n in message["graph"]["nodes"]}
    finally:
        close_map(transport)

    # An API token made on A opens the API on B; revoked on A, refused on B.
    made = a.post("/account/tokens/", {"name": "grafana"})
    assert made.status_code == 200, made.text[-500:]
    token = re.search(r'id="new-token">(ptl_[A-Za-z0-9_-]+)<', made.text).group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    api = Browser().on(port_b)  # no cookie: the token alone
    assert api.get("/api/graph/", params={"level": "host"},
                   headers=bearer).status_code == 200
    pk = re.search(r'action="/account/tokens/(\d+)/revoke/"', made.text).group(1)
    assert a.post(f"/account/tokens/{pk}/revoke/", {}).status_code == 302
    assert api.get("/api/graph/", params={"level": "host"},
                   headers=bearer).status_code == 401

    # A password change on A ends the user's session logged in on B (page,
    # API and a new socket) and keeps the one that changed it, on B too.
    elsewhere = Browser().on(port_b)
    assert logged_in(elsewhere.log_in(VIEWER, VIEWER_PASSWORD))
    assert elsewhere.get("/").status_code == 200
    ended = elsewhere.cookie_header  # the next answer deletes the cookie
    assert await socket_status(port_b, ended) == 101
    (_, open_on_b), _ = await open_map(port_b, ended, level="host")
    assert wait_for(lambda: redis_client.zcard(ENDED_LOGINS_GROUP) > 0, timeout=10)
    new_password = "vera-new-pw-for-shared-db-2"
    changed = a.post("/account/password/", {
        "old_password": VIEWER_PASSWORD, "new_password1": new_password,
        "new_password2": new_password})
    assert changed.status_code == 302, changed.text[-500:]
    # B's open map socket of that session closes at once (A told B's login
    # watch through the channel layer), not at its 30 s check.
    await asyncio.wait_for(open_on_b, 5)
    assert to_login(elsewhere.get("/"))
    assert elsewhere.get("/api/graph/", params={"level": "host"}).status_code == 401
    assert await socket_status(port_b, ended) != 101
    assert b.get("/").status_code == 200
    assert await socket_status(port_b, browser.cookie_header) == 101
    assert logged_in(Browser().on(port_b).log_in(VIEWER, new_password))

    # django-axes counts failures in the shared database: two on A and one on
    # B reach the limit of three, and the lockout holds on both workers, even
    # for the right password. (Last: it locks out 127.0.0.1 as well.)
    intruder = Browser()
    for port in (port_a, port_a):
        assert intruder.on(port).log_in(VIEWER, "wrong-pw").status_code == 200
    assert intruder.on(port_b).log_in(VIEWER, "wrong-pw").status_code == 429
    for port in (port_a, port_b):
        refused = Browser().on(port).log_in(VIEWER, new_password)
        assert refused.status_code == 429, (port, refused.status_code)


def test_preparedb_waits_for_the_lock_and_replicas_prepare_one_at_a_time(
        postgres, shared_env, tmp_path):
    """``preparedb`` holds PostgreSQL's advisory lock: while another holds it,
    it waits; two started together both succeed on an empty database, with
    one admin (Django's migrate alone takes no lock)."""
    with postgres.connect(shared_env["DATABASE_URL"].rsplit("/", 1)[1]) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [PREPARE_LOCK_ID])
        waiting = manage(shared_env, "preparedb", name="preparedb-waiting").start()
        try:
            asked = ("SELECT count(*) FROM pg_locks "
                     "WHERE locktype = 'advisory' AND NOT granted")
            assert wait_for(lambda: conn.execute(asked).fetchone()[0] == 1,
                            timeout=60, interval=0.2), waiting.describe()
            waiting.assert_alive("preparedb while the lock is held")
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_name = 'auth_user'").fetchone()[0]
            assert tables == 0  # nothing migrated under another's lock
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [PREPARE_LOCK_ID])
        assert waiting.wait(120) == 0, waiting.describe()
        assert "waited for another process preparing the database" in \
            waiting.output()

    other_db = dict(shared_env, DATABASE_URL=postgres.new_database())
    together = [manage(worker_env(other_db, tmp_path / f"var-{i}"), "preparedb",
                       name=f"preparedb-{i}") for i in range(2)]
    for proc in together:
        proc.start()
    for proc in together:
        assert proc.wait(180) == 0, proc.describe()
    count = ("from django.contrib.auth import get_user_model; "
             "print('admins', get_user_model().objects.filter("
             "is_superuser=True).count())")
    assert "admins 1" in run_manage(other_db, "shell", "-c", count)
    # A restart leaves the admin's password hash as it is: hashed again (a
    # new salt), it would end every admin session on every worker.
    stored = ("from django.contrib.auth import get_user_model; print('stored', "
              "get_user_model().objects.get(username='admin').password)")

    def admin_hash() -> str:
        output = run_manage(other_db, "shell", "-c", stored)
        return re.search(r"^stored (\S+)$", output, re.MULTILINE).group(1)

    before = admin_hash()
    run_manage(other_db, "preparedb")
    assert admin_hash() == before
