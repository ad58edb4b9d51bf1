"""Host processes as a user knows them, and the host's listening sockets.

The kernel names the thread that made a call (``bpf_get_current_comm``): a
browser's connections come from ``Chrome_ChildIOT``, a Python server's from
``ThreadPoolForeg``. A process is named here by its thread-group leader's
``comm`` (``/proc/<tgid>/stat``), else its executable's base name, and cached
by (pid, start time) so that a reused pid is read again.

An accept completes in softirq, with no process to name: it is attributed
through the socket that listens on its local address and port. Listening
sockets that predate the eBPF tracer (Redis started before the collector)
were never seen being opened, so the host's network namespace is read once
at start, and again when an accept finds no listener.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from collector.services import _read, _read_tables, _socket_inodes

__all__ = [
    "HostListener",
    "ProcessIdentity",
    "ProcessNames",
    "host_listeners",
    "listener_for",
    "parse_stat",
]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """How the map names a process, and what its details show."""

    name: str
    cmdline: str = ""


@dataclass(frozen=True, slots=True)
class HostListener:
    """A socket listening in the host's network namespace."""

    ip: str
    port: int
    proto: str
    pid: int


def parse_stat(text: str) -> tuple[str, int] | None:
    """(comm, start time in clock ticks) from a ``/proc/<pid>/stat`` text.

    The comm is between the first ``(`` and the last ``)``: it may hold both.

    >>> parse_stat("42 (my (odd) name) S 1 42 42 0 -1 4194560 " + "0 " * 12
    ...            + "987654 0")
    ('my (odd) name', 987654)
    """
    head, sep, tail = text.rpartition(")")
    if not sep or "(" not in head:
        return None
    comm = head.partition("(")[2]
    fields = tail.split()
    # Field 22 (starttime); fields[0] here is field 3 (state).
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return comm, int(fields[19])


class ProcessNames:
    """pid -> ProcessIdentity, read from /proc and cached by (pid, start time)."""

    # Entries not asked for this long are dropped (their process likely gone).
    FORGET_AFTER = 300.0

    def __init__(self, proc: str | os.PathLike = "/proc", clock=time.monotonic):
        self.proc = os.fspath(proc)
        self.clock = clock
        self._cache: dict[int, tuple[int, ProcessIdentity, float]] = {}

    def identity(self, pid: int) -> ProcessIdentity | None:
        """The process ``pid`` (a tgid) is now, or None if it has exited."""
        if pid <= 0:
            return None
        stat = parse_stat(_read(f"{self.proc}/{pid}/stat") or "")
        if stat is None:
            return None
        comm, start = stat
        now = self.clock()
        hit = self._cache.get(pid)
        if hit is not None and hit[0] == start:
            self._cache[pid] = (start, hit[1], now)
            return hit[1]
        name = comm
        if not name:
            try:
                name = os.path.basename(os.readlink(f"{self.proc}/{pid}/exe"))
            except OSError:
                name = ""
        cmdline = (_read(f"{self.proc}/{pid}/cmdline") or "").replace("\0", " ")
        found = ProcessIdentity(name, cmdline.strip())
        self._cache[pid] = (start, found, now)
        if len(self._cache) > 4096:
            self._cache = {p: e for p, e in self._cache.items()
                           if now - e[2] < self.FORGET_AFTER}
        return found

    def names(self, pids) -> dict[int, ProcessIdentity]:
        """The identities of those of ``pids`` still running."""
        found = {}
        for pid in set(pids):
            identity = self.identity(pid)
            if identity is not None:
                found[pid] = identity
        return found


def host_listeners(proc: str | os.PathLike = "/proc") -> list[HostListener]:
    """Listening TCP and bound UDP sockets of the host's network namespace,
    each with the lowest pid holding it.

    The host's namespace is the collector's own, as for host_addresses (it
    runs with the host's network, and its pid namespace to see processes).

    A process is visited only if it shares that namespace; its socket inodes
    come from ``/proc/<pid>/fd``. One pass over every process: call it rarely.
    """
    proc = os.fspath(proc)
    try:
        host_netns = os.stat(f"{proc}/self/ns/net").st_ino
    except OSError:
        return []
    listening = _read_tables(proc, "self")
    if not listening:
        return []
    owner: dict[int, int] = {}
    for name in sorted(os.listdir(proc), key=lambda n: (len(n), n)):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.stat(f"{proc}/{pid}/ns/net").st_ino != host_netns:
                continue
        except OSError:
            continue
        for inode in _socket_inodes(proc, pid):
            if inode in listening:
                owner.setdefault(inode, pid)
    return [HostListener(ip, port, proto, owner[inode])
            for inode, (ip, port, proto) in listening.items() if inode in owner]


def listener_for(listeners: dict[tuple[str, int, str], str], local_ip: str,
                 port: int, proto: str) -> str | None:
    """The node listening on ``local_ip:port``: an exact bind first, then a
    wildcard one (a dual-stack ``::`` socket accepts IPv4 too).

    >>> table = {("0.0.0.0", 80, "tcp"): "a", ("127.0.0.1", 80, "tcp"): "b",
    ...          ("::", 53, "udp"): "c"}
    >>> listener_for(table, "127.0.0.1", 80, "tcp"), listener_for(table,
    ...     "10.0.0.1", 80, "tcp"), listener_for(table, "10.0.0.1", 53, "udp")
    ('b', 'a', 'c')
    """
    wildcards = ("0.0.0.0", "::") if ":" not in local_ip else ("::",)
    for ip in (local_ip, *wildcards):
        node = listeners.get((ip, port, proto))
        if node is not None:
            return node
    return None
