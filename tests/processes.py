"""Subprocesses a test starts: output kept under artifacts/, checked alive.

A test that discards a server's output cannot say why it failed, and one that
never checks the server still runs passes on a dead one (a dead analyzer reads
as all green). ``LoggedProcess`` writes the output to a file, asserts the
process alive, and puts the file's tail in every failure message.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "processes"
_serial = itertools.count(1)


class LoggedProcess:
    """One subprocess whose stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, argv, *, cwd=None, env=None, **popen_args):
        self.name = name
        self.popen_args = popen_args
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.env = env
        # Sessions run side by side: the pid and a serial keep logs apart.
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.log_path = ARTIFACTS / f"{safe}-{os.getpid()}-{next(_serial)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> LoggedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                **self.popen_args)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def describe(self, chars: int = 3000) -> str:
        """Its state and the tail of its output, for a failure message."""
        if self.proc is None:
            state = "never started"
        elif self.proc.poll() is None:
            state = f"running (pid {self.proc.pid})"
        else:
            state = f"exited with {self.proc.returncode}"
        return f"{self.name} {state}; {self.log_path} ends:\n{self.tail(chars)}"

    def assert_alive(self, what: str = "") -> None:
        assert self.alive, f"{what + ': ' if what else ''}{self.describe()}"

    def stop(self, timeout: float = 30) -> int | None:
        """Terminate it (kill after ``timeout``); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def wait(self, timeout: float) -> int:
        """Its exit code once it ends on its own within ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout} s: {self.describe()}") from None

    def __enter__(self) -> LoggedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
