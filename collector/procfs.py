"""Fallback connection tracer that polls /proc when eBPF cannot load.

Once per read it visits each network namespace once (through one of its
processes), parses ``/proc/<pid>/net/tcp`` and ``tcp6``, and compares the
established connections with those of the previous read: a 4-tuple not seen
before counts as one ``accepts`` (``in``) when its local port is (or was, at
an earlier read) a listening port of that namespace, else as one
``connections`` (``out``); without a listening port seen on either side, an
ephemeral local port facing a lower remote port is the client. Sockets are
attributed through their inode to the owning process (``/proc/<pid>/fd``) and
its v2 cgroup id.

Only what exists at the moment of a read is seen: connections that open and
close between two reads are missed, and there are no failures, bytes, resets,
retransmits or UDP counts. The first read reports every connection already
established as new.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from collector.cgroups import find_cgroup2_mount, parse_proc_cgroup
from collector.readings import FlowSample, ListenSample, TracerReading

__all__ = [
    "ProcfsTracer",
    "TcpSocket",
    "decode_address",
    "is_inbound",
    "parse_proc_net_tcp",
]

log = logging.getLogger("portolan.collector.procfs")

TCP_ESTABLISHED = 0x01
TCP_LISTEN = 0x0A


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One line of /proc/net/tcp{,6}."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: int
    inode: int


def decode_address(text: str) -> tuple[str, int]:
    """Decode ``HEXADDR:HEXPORT`` from /proc/net/tcp{,6} (addresses in host order).

    IPv4-mapped IPv6 addresses come back as dotted IPv4.

    >>> decode_address("0100007F:1F90")
    ('127.0.0.1', 8080)
    """
    addr_hex, _, port_hex = text.partition(":")
    raw = bytes.fromhex(addr_hex)
    # The kernel prints each 32-bit word in host (little-endian) order.
    data = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(data) == 4:
        ip = str(ipaddress.IPv4Address(data))
    else:
        addr = ipaddress.IPv6Address(data)
        ip = str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
    return ip, int(port_hex, 16)


def parse_proc_net_tcp(text: str) -> list[TcpSocket]:
    """Parse the text of /proc/net/tcp or /proc/net/tcp6; bad lines are skipped."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local_ip, local_port = decode_address(fields[1])
            remote_ip, remote_port = decode_address(fields[2])
            sockets.append(
                TcpSocket(
                    local_ip=local_ip,
                    local_port=local_port,
                    remote_ip=remote_ip,
                    remote_port=remote_port,
                    state=int(fields[3], 16),
                    inode=int(fields[9]),
                )
            )
        except ValueError:
            continue
    return sockets


EPHEMERAL_LOW = 32768  # Linux's default net.ipv4.ip_local_port_range start


def is_inbound(local_port: int, remote_port: int, server_ports: set[int],
               listened_before: set[int] = frozenset()) -> bool:
    """Whether an established connection was accepted (True) or connected.

    A local port listening in the namespace now decides. Failing that, an
    ephemeral local port facing a well-known remote port is a client, even on
    a port that once listened (the kernel hands such ports out again); then
    a port that listened before (``nc -l`` closes its listener once it has
    accepted); then the port ranges.

    >>> is_inbound(8080, 41000, {8080}), is_inbound(41000, 8080, set())
    (True, False)
    >>> is_inbound(45123, 443, set(), {45123})  # a client on a reused port
    False
    """
    if local_port in server_ports:
        return True
    if remote_port in server_ports:
        return False
    if local_port >= EPHEMERAL_LOW > remote_port:
        return False
    if local_port in listened_before:
        return True
    if remote_port in listened_before:
        return False
    return local_port < EPHEMERAL_LOW <= remote_port


class ProcfsTracer:
    """Poll /proc/<pid>/net/tcp{,6} per network namespace; same interface as eBPF."""

    mode = "procfs"

    def __init__(self, proc: str | os.PathLike = "/proc", cgroup_root=None):
        self.proc = Path(proc)
        self.missing_hooks: list[str] = []
        if cgroup_root is None:
            try:
                mountinfo = Path(self.proc, "self", "mountinfo").read_text()
            except OSError:
                mountinfo = ""
            cgroup_root = find_cgroup2_mount(mountinfo)
        self.cgroup_root = Path(cgroup_root) if cgroup_root else None
        # netns inode -> established 4-tuples seen at the previous read.
        self._previous: dict[int, set[tuple[str, int, str, int]]] = {}
        # netns inode -> every port seen listening there: servers such as
        # `nc -l` close their listening socket once they have accepted.
        self._server_ports: dict[int, set[int]] = {}

    def _pids(self) -> list[int]:
        return sorted(int(n) for n in os.listdir(self.proc) if n.isdigit())

    def _netns(self, pid: int) -> int | None:
        try:
            return os.stat(Path(self.proc, str(pid), "ns", "net")).st_ino
        except OSError:
            return None

    def _socket_owners(self, pids: list[int]) -> dict[int, int]:
        """Socket inode -> pid of a process holding it."""
        owners: dict[int, int] = {}
        for pid in pids:
            fd_dir = Path(self.proc, str(pid), "fd")
            try:
                names = os.listdir(fd_dir)
            except OSError:
                continue
            for name in names:
                try:
                    target = os.readlink(fd_dir / name)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owners.setdefault(int(target[8:-1]), pid)
        return owners

    def _cgroup_id(self, pid: int) -> int:
        if not pid or self.cgroup_root is None:
            return 0
        try:
            text = Path(self.proc, str(pid), "cgroup").read_text()
        except OSError:
            return 0
        path = parse_proc_cgroup(text).get("")
        if path is None:
            return 0
        try:
            return os.stat(str(self.cgroup_root) + path.rstrip("/")).st_ino
        except OSError:
            return 0

    def _comm(self, pid: int) -> str:
        try:
            return Path(self.proc, str(pid), "comm").read_text().strip()
        except OSError:
            return ""

    def read(self) -> TracerReading:
        """New established connections since the previous read, and listens now."""
        pids = self._pids()
        namespaces: dict[int, list[int]] = {}
        for pid in pids:
            ns = self._netns(pid)
            if ns is not None:
                namespaces.setdefault(ns, []).append(pid)
        owners = self._socket_owners(pids)
        owner_info: dict[int, tuple[int, str]] = {}

        def info(pid: int) -> tuple[int, str]:
            if pid not in owner_info:
                owner_info[pid] = (self._cgroup_id(pid), self._comm(pid))
            return owner_info[pid]

        flows: dict[tuple, FlowSample] = {}
        listens: list[ListenSample] = []
        current: dict[int, set[tuple[str, int, str, int]]] = {}
        for ns, ns_pids in namespaces.items():
            seen_before = self._previous.get(ns, set())
            read = self._read_tables(ns_pids)
            if read is None:
                # Every process we could read it through has gone: nothing
                # new from it, and nothing forgotten (else all would be new).
                current[ns] = seen_before
                continue
            ns_pid, sockets = read
            listening = {s.local_port for s in sockets if s.state == TCP_LISTEN}
            listened = self._server_ports.setdefault(ns, set())
            listened.update(listening)
            established = current.setdefault(ns, set())
            for s in sockets:
                pid = owners.get(s.inode, 0)
                if s.state == TCP_LISTEN:
                    cgroup_id, comm = info(pid)
                    listens.append(
                        ListenSample(
                            cgroup_id, pid, comm, s.local_ip, s.local_port, "tcp"
                        )
                    )
                    continue
                if s.state != TCP_ESTABLISHED:
                    continue
                tuple4 = (s.local_ip, s.local_port, s.remote_ip, s.remote_port)
                established.add(tuple4)
                if tuple4 in seen_before:
                    continue
                inbound = is_inbound(s.local_port, s.remote_port, listening,
                                     listened)
                # Unowned sockets (mid-teardown) still count, under the netns.
                cgroup_id, comm = info(pid or ns_pid)
                direction = "in" if inbound else "out"
                port = s.local_port if inbound else s.remote_port
                key = (cgroup_id, pid, direction, s.local_ip, s.remote_ip, port)
                sample = flows.get(key)
                if sample is None:
                    sample = flows[key] = FlowSample(
                        cgroup_id=cgroup_id,
                        pid=pid,
                        comm=comm,
                        direction=direction,
                        local_ip=s.local_ip,
                        ip=s.remote_ip,
                        port=port,
                        proto="tcp",
                        counters={},
                    )
                counter = "accepts" if inbound else "connections"
                sample.counters[counter] = sample.counters.get(counter, 0) + 1
        self._previous = current
        for gone in set(self._server_ports) - set(namespaces):
            del self._server_ports[gone]
        return TracerReading(flows=list(flows.values()), listens=listens, lost=0)

    def _read_tables(self, pids: list[int]) -> tuple[int, list[TcpSocket]] | None:
        """(pid, TCP sockets) of a namespace, through the first of its ``pids``
        still in it; None when all have gone. A table missing from a process
        still in its namespace is one this kernel lacks (tcp6 without IPv6):
        empty. An exited process, reaped or not (a zombie keeps /proc/<pid>
        but not its namespace), is skipped for the next one."""
        for pid in pids:
            sockets: list[TcpSocket] = []
            for name in ("tcp", "tcp6"):
                try:
                    text = Path(self.proc, str(pid), "net", name).read_text()
                except OSError:
                    if self._netns(pid) is None:
                        break  # it exited mid-read: try the next one
                    continue
                sockets.extend(parse_proc_net_tcp(text))
            else:
                return pid, sockets
        return None

    def close(self) -> None:
        """Nothing to release; present for interface parity with the eBPF tracer."""
        self._previous.clear()
