"""The processes inside a container and the ports they listen on.

Processes come from the container cgroup's ``cgroup.procs`` (and those of its
sub-cgroups), their identity from ``/proc/<pid>/{comm,cmdline,status}``, and
the user name from the container's own ``/etc/passwd`` (read through
``/proc/<pid>/root``, since the host's names mean nothing inside an image).

Listening ports: each process's socket inodes (``/proc/<pid>/fd`` links
``socket:[N]``) are matched against ``/proc/<pid>/net/{tcp,tcp6,udp,udp6}`` of
its network namespace: TCP sockets in LISTEN, UDP sockets that are bound and
unconnected. A socket shared by several processes (a pre-forking server's
workers) is credited to the lowest pid holding it, usually the parent.

Caveat: an unconnected UDP client socket looks exactly like a UDP server, so
a process that sends datagrams with ``sendto`` from a bound socket is listed
with that port too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from collector.procfs import parse_proc_net_tcp
from collector.schema import plain_fields

__all__ = [
    "ListeningCache",
    "ServiceRecord",
    "cgroup_pids",
    "listening_sockets",
    "parse_passwd",
    "parse_status_uid",
    "process_services",
    "services_for_pids",
    "services_for_container",
]

TCP_LISTEN = 0x0A
UDP_UNCONNECTED = 0x07  # TCP_CLOSE: what an unconnected UDP socket shows


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One process of a container and one port it listens on (None: none)."""

    pid: int
    command: str  # the process name (comm)
    user: str  # user name inside the container, else the numeric uid
    port: int | None = None
    proto: str = ""  # "tcp", "udp" or "" when the process listens on nothing
    ip: str = ""  # listening address ("0.0.0.0", "::", "127.0.0.1"...)
    cmdline: str = ""

    @property
    def label(self) -> str:
        """How the map names it: ``"httpd :8080"``, ``"dnsd :53/udp"`` or ``"sh"``.

        >>> ServiceRecord(1, "httpd", "root", 8080, "tcp").label
        'httpd :8080'
        """
        if self.port is None:
            return self.command
        suffix = "" if self.proto == "tcp" else f"/{self.proto}"
        return f"{self.command} :{self.port}{suffix}"

    def to_dict(self) -> dict:
        return plain_fields(self)


# ------------------------------------------------------------------ parsers


def parse_status_uid(text: str) -> int | None:
    """The real uid in a /proc/<pid>/status text.

    >>> parse_status_uid("Name:\\tsh\\nUid:\\t1000\\t1000\\t1000\\t1000\\n")
    1000
    """
    for line in text.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            try:
                return int(fields[1])
            except (IndexError, ValueError):
                return None
    return None


def parse_passwd(text: str) -> dict[int, str]:
    """uid -> user name from an /etc/passwd text (first name per uid wins).

    >>> parse_passwd("root:x:0:0:root:/:/bin/sh\\nbad\\n")
    {0: 'root'}
    """
    users: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3:
            continue
        try:
            users.setdefault(int(fields[2]), fields[0])
        except ValueError:
            continue
    return users


def listening_sockets(tables: dict[str, str]) -> dict[int, tuple[str, int, str]]:
    """Socket inode -> (ip, port, proto) of listening sockets.

    ``tables`` maps ``tcp``/``tcp6``/``udp``/``udp6`` to the text of the
    matching /proc/net file.

    >>> t = ("  sl local rem st\\n"
    ...      "   0: 00000000:1F90 00000000:0000 0A 0:0 0:0 0 0 0 4242 1\\n")
    >>> listening_sockets({"tcp": t})
    {4242: ('0.0.0.0', 8080, 'tcp')}
    """
    found: dict[int, tuple[str, int, str]] = {}
    for name, text in tables.items():
        proto = "udp" if name.startswith("udp") else "tcp"
        for s in parse_proc_net_tcp(text):
            if proto == "tcp":
                if s.state != TCP_LISTEN:
                    continue
            elif s.state != UDP_UNCONNECTED or s.remote_port != 0 or not s.local_port:
                continue
            if s.inode:
                found[s.inode] = (s.local_ip, s.local_port, proto)
    return found


def process_services(
    processes: list[tuple[int, str, str, str]],
    sockets_of: dict[int, set[int]],
    listening: dict[int, tuple[str, int, str]],
) -> list[ServiceRecord]:
    """Combine processes, their socket inodes and listening sockets into records.

    ``processes`` holds (pid, command, user, cmdline); each listening inode is
    credited once, to the lowest pid holding it; duplicates of one port (a
    dual-stack listener) collapse into one record per (pid, port, proto).
    """
    owner: dict[int, int] = {}
    for pid in sorted(sockets_of):
        for inode in sockets_of[pid]:
            if inode in listening:
                owner.setdefault(inode, pid)
    ports: dict[int, dict[tuple[int, str], str]] = {}
    for inode, pid in owner.items():
        ip, port, proto = listening[inode]
        seen = ports.setdefault(pid, {})
        # Prefer the wildcard address when a port is bound several times.
        if (port, proto) not in seen or ip in ("0.0.0.0", "::"):
            seen[(port, proto)] = ip
    records = []
    for pid, command, user, cmdline in sorted(processes):
        bound = ports.get(pid)
        if not bound:
            records.append(ServiceRecord(pid, command, user, cmdline=cmdline))
            continue
        for (port, proto), ip in sorted(bound.items()):
            records.append(ServiceRecord(pid, command, user, port, proto, ip, cmdline))
    return records


# ------------------------------------------------------------------ I/O


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _read_listeners(path: str, chunk: int = 8192) -> str | None:
    """The head of a /proc/net/tcp{,6} table, up to its last listening socket.

    The kernel prints listening sockets first, then the established table
    (TIME_WAIT included), formatting only as much as each read asks for.
    Reading stops at the first line that is not LISTEN, so the kernel never
    formats the thousands of connections of a busy server, and we never
    parse them.
    """
    kept = []
    try:
        with open(path, "rb", buffering=chunk) as f:
            kept.append(f.readline())  # the header
            for line in f:
                fields = line.split()
                if len(fields) > 3 and fields[3] != b"0A":
                    break
                kept.append(line)
    except OSError:
        return None
    return b"".join(kept).decode("utf-8", "replace")


def cgroup_pids(cgroup_dir: str | os.PathLike) -> list[int]:
    """Process ids in a cgroup and its sub-cgroups (empty if it vanished)."""
    pids: set[int] = set()
    for dirpath, _dirs, files in os.walk(os.fspath(cgroup_dir)):
        if "cgroup.procs" not in files:
            continue
        text = _read(os.path.join(dirpath, "cgroup.procs")) or ""
        pids.update(int(line) for line in text.split() if line.isdigit())
    return sorted(pids)


def _socket_inodes(proc: str, pid: int) -> set[int]:
    fd_dir = f"{proc}/{pid}/fd"
    inodes: set[int] = set()
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class ListeningCache:
    """Listening sockets per network namespace, re-read at most every ``ttl`` s.

    Reading a namespace's /proc/net/tcp makes the kernel walk the whole
    established table, which all namespaces share, to find that namespace's
    first connection: on a busy host every read is costly, and listeners
    rarely change. A namespace is read again at once when the processes in it
    change (a new server is the usual reason for a new listener); a process
    that starts listening later is seen within ``ttl`` (and by the eBPF
    tracer at once).
    """

    def __init__(self, ttl: float = 30.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[int, tuple[tuple[int, ...], float, dict]] = {}

    def get(self, netns: int, pids: tuple[int, ...], read) -> dict:
        """The cached table of ``netns`` for this process set, else ``read()``."""
        now = self.clock()
        hit = self._entries.get(netns)
        if hit and hit[0] == pids and now - hit[1] < self.ttl:
            return hit[2]
        value = read()
        self._entries[netns] = (pids, now, value)
        # Namespaces not asked for in two periods are gone: forget them.
        self._entries = {k: v for k, v in self._entries.items()
                         if now - v[1] < 2 * self.ttl}
        return value


def _read_tables(proc: str, pid: int) -> dict[int, tuple[str, int, str]]:
    tables = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        path = f"{proc}/{pid}/net/{name}"
        text = _read_listeners(path) if name.startswith("tcp") else _read(path)
        if text:
            tables[name] = text
    return listening_sockets(tables)


def services_for_pids(
    pids: list[int], proc: str | os.PathLike = "/proc",
    cache: ListeningCache | None = None,
) -> list[ServiceRecord]:
    """Services of a set of processes (e.g. one container's), read from /proc."""
    proc = os.fspath(proc)
    pid_set = tuple(sorted(pids))
    processes = []
    sockets_of: dict[int, set[int]] = {}
    listening: dict[int, tuple[str, int, str]] = {}
    seen_netns: set[int] = set()
    users_by_root: dict[tuple[int, int], dict[int, str]] = {}
    for pid in pids:
        comm = _read(f"{proc}/{pid}/comm")
        status = _read(f"{proc}/{pid}/status")
        if comm is None or status is None:
            continue  # exited meanwhile
        cmdline = (_read(f"{proc}/{pid}/cmdline") or "").replace("\0", " ").strip()
        uid = parse_status_uid(status)
        user = str(uid) if uid is not None else ""
        try:
            st = os.stat(f"{proc}/{pid}/root/etc/passwd")
            passwd = (st.st_dev, st.st_ino)
        except OSError:
            passwd = None
        if passwd is not None:
            if passwd not in users_by_root:
                users_by_root[passwd] = parse_passwd(
                    _read(f"{proc}/{pid}/root/etc/passwd") or ""
                )
            user = users_by_root[passwd].get(uid, user)
        processes.append((pid, comm.strip(), user, cmdline))
        sockets_of[pid] = _socket_inodes(proc, pid)
        if not sockets_of[pid]:
            continue
        # One read of the socket tables per network namespace.
        try:
            netns = os.stat(f"{proc}/{pid}/ns/net").st_ino
        except OSError:
            continue
        if netns in seen_netns:
            continue
        seen_netns.add(netns)
        if cache is None:
            listening.update(_read_tables(proc, pid))
        else:
            listening.update(
                cache.get(netns, pid_set, lambda pid=pid: _read_tables(proc, pid))
            )
    return process_services(processes, sockets_of, listening)


def services_for_container(
    cgroup_dir: str | os.PathLike, proc: str | os.PathLike = "/proc",
    cache: ListeningCache | None = None,
) -> list[ServiceRecord]:
    """Services of the container whose cgroup directory is ``cgroup_dir``.

    ``cgroup_dir`` is e.g. ``CgroupMetricsReader.locate(cid).procs_dir``.
    """
    return services_for_pids(cgroup_pids(cgroup_dir), proc, cache)
