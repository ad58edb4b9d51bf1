"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql``.

``initdb`` and ``pg_ctl`` from /usr/lib/postgresql/<version>/bin make a
cluster in a temporary directory and serve it on a free loopback port only
(TCP, password auth: the tests' URLs carry the password as a deployment's
would). PostgreSQL refuses to run as root, so as root the cluster belongs to
the ``postgres`` user (``nobody`` without it) and its programs run through
``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.conftest import free_port, require

USER, PASSWORD = "portolan", "pg-pw-for-tests-1"


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """One cluster: ``start``, ``new_database`` (its URL), ``stop``."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="portolan-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.owner = None
        if os.geteuid() == 0:
            self.owner = next(name for name in ("postgres", "nobody")
                              if _user_exists(name))
            entry = pwd.getpwnam(self.owner)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *argv, **kwargs) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.owner, "--"] if self.owner else []
        return subprocess.run([*prefix, *map(str, argv)], capture_output=True,
                              text=True, timeout=120, **kwargs)

    def start(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.owner:
            shutil.chown(pwfile, self.owner)
        done = self._run(self.bin / "initdb", "-D", self.data, "-U", USER,
                         "--auth=scram-sha-256", f"--pwfile={pwfile}",
                         "-E", "UTF8", "--no-locale")
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.dir} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=60")
        done = self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.log,
                         "-o", options, "-w", "-t", "60", "start")
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}"
                               f"\n{self.server_log()}")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER,
                               password=PASSWORD, dbname=database, autocommit=True)

    def new_database(self) -> str:
        """An empty database of its own, for one test: its URL."""
        name = f"portolan_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate",
                      "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def started_postgres() -> PostgresServer:
    """A running cluster, or a skip (in CI a failure) saying what is missing."""
    bin_dir = postgres_bin()
    require(bin_dir is not None,
            "PostgreSQL not installed (scripts/install-deps.sh test installs it)")
    require(os.geteuid() != 0 or shutil.which("runuser") is not None,
            "runuser (util-linux) missing: PostgreSQL will not run as root")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
