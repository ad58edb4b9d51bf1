"""The raw hooks' start-up self-test: traffic whose every field is known,
then what the loaded program counted for it.

Why: the raw hooks (raw_hooks.h) read kernel struct fields at offsets from
the kernel's BTF. A wrong offset is no load error, it is a wrong edge on the
map. So before the collector trusts them it makes, on loopback, a TCP
connection between two addresses and ports it chose (127.0.0.1 -> 127.0.0.2)
and a UDP request and reply, the same over ::1 where IPv6 is configured, and a
TCP connect that fails for want of a route (made in a network namespace of
its own with only lo up, so that nothing is sent), and reads the
counters: each must name exactly those addresses, ports and protocol (a wrong
family or protocol makes the flow go missing; so does a wrong route table,
interface, source address or port for the failed connect). Anything else
fails the test, naming the kernel field behind what disagreed; the tracer then
loads the tracepoint program instead (collector.ebpf.tracer).

Candidates for each expected flow are picked by what no tested field decides
(this process's id, the direction, the byte counts chosen per family), then
compared field by field. What the reading holds besides the test's own flows
(the host's traffic meanwhile) is handed back, to be counted as usual.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from collector.readings import FlowSample, ListenSample, TracerReading

__all__ = ["Expected", "SelfTestFailed", "check", "run"]

log = logging.getLogger("portolan.collector.ebpf")

CLONE_NEWNET = 0x40000000
# Where the connect with no route goes (documentation addresses, RFC 5737 and
# RFC 3849), from a namespace with only lo up: nothing is sent.
NO_ROUTE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
NO_ROUTE_PORT = 9


class SelfTestFailed(RuntimeError):
    """The raw hooks reported the test traffic wrong; the message says which field."""


@dataclass(slots=True)
class Expected:
    """One flow (or listening socket) the test made, and how to find it."""

    what: str
    listen: bool = False
    # Picks candidates by what the tested fields do not decide.
    select: dict[str, object] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    # attribute -> (the value it must have, the kernel field it comes from).
    want: dict[str, tuple[object, str]] = field(default_factory=dict)
    # Kernel fields that decide whether it is counted at all.
    gate: tuple[str, ...] = ()


def _matches(sample, exp: Expected) -> bool:
    if any(getattr(sample, k) != v for k, v in exp.select.items()):
        return False
    counters = getattr(sample, "counters", {})
    return all(counters.get(k, 0) == v for k, v in exp.counters.items())


def check(flows: list[FlowSample], listens: list[ListenSample],
          expected: list[Expected]) -> tuple[list[str], list[FlowSample]]:
    """(what disagreed, one line each; the flows that were the test's own).

    >>> f = FlowSample(0, 7, "", "out", "127.0.0.1", "127.0.0.9", 80, "tcp",
    ...                {"connections": 1})
    >>> e = Expected("connect", select={"pid": 7}, counters={"connections": 1},
    ...              want={"ip": ("127.0.0.2", "skc_daddr"), "port": (80, "skc_dport")})
    >>> check([f], [], [e])[0]
    ["connect: skc_daddr says ip '127.0.0.9', expected '127.0.0.2'"]
    """
    problems, own = [], []
    pool = {id(s): s for s in [*flows, *listens]}
    for exp in expected:
        candidates = [s for s in pool.values()
                      if isinstance(s, ListenSample) == exp.listen and _matches(s, exp)]
        fields = sorted({*exp.gate, *(name for _, name in exp.want.values())})
        if not candidates:
            problems.append(f"{exp.what}: not seen at all (read from "
                            f"{', '.join(fields)})")
            continue

        def agreeing(sample, exp=exp):
            return sum(getattr(sample, k) == v for k, (v, _) in exp.want.items())

        best = max(candidates, key=agreeing)
        del pool[id(best)]
        if not exp.listen:
            own.append(best)
        problems += [
            f"{exp.what}: {name} says {attr} {getattr(best, attr)!r}, expected {want!r}"
            for attr, (want, name) in exp.want.items()
            if getattr(best, attr) != want
        ]
    return problems, own


def _ipv6_loopback() -> bool:
    try:
        return "00000000000000000000000000000001" in Path(
            "/proc/net/if_inet6").read_text()
    except OSError:
        return False


def _tcp(family: int, client_ip: str, server_ip: str, payload: int,
         sockets: list) -> tuple[int, int]:
    """A connection client_ip -> server_ip carrying ``payload`` bytes;
    (server port, client port). The listener stays open in ``sockets``."""
    srv = socket.socket(family, socket.SOCK_STREAM)
    sockets.append(srv)
    srv.bind((server_ip, 0))
    srv.listen(1)
    cli = socket.socket(family, socket.SOCK_STREAM)
    sockets.append(cli)
    cli.bind((client_ip, 0))
    cli.settimeout(5)
    cli.connect(srv.getsockname()[:2])
    conn, _ = srv.accept()
    sockets.append(conn)
    cli.sendall(b"t" * payload)
    conn.settimeout(5)
    conn.recv(payload, socket.MSG_WAITALL)
    return srv.getsockname()[1], cli.getsockname()[1]


def _udp(family: int, client_ip: str, server_ip: str, request: int, reply: int,
         sockets: list) -> int:
    """One datagram client_ip -> server_ip and its reply; the server's port."""
    srv = socket.socket(family, socket.SOCK_DGRAM)
    sockets.append(srv)
    srv.bind((server_ip, 0))
    cli = socket.socket(family, socket.SOCK_DGRAM)
    sockets.append(cli)
    cli.bind((client_ip, 0))
    for s in (srv, cli):
        s.settimeout(5)
    cli.sendto(b"q" * request, srv.getsockname()[:2])
    _, peer = srv.recvfrom(64)
    srv.sendto(b"r" * reply, peer)
    cli.recv(64)
    return srv.getsockname()[1]


def _tcp_expected(family: int, client_ip: str, server_ip: str, tcp_bytes: int,
                  sockets: list) -> list[Expected]:
    """Make a test connection; what the program must report for it."""
    pid = os.getpid()
    v6 = "v6_" if family == socket.AF_INET6 else ""
    daddr, saddr = f"skc_{v6}daddr", f"skc_{v6}rcv_saddr"
    port, _ = _tcp(family, client_ip, server_ip, tcp_bytes, sockets)
    name = f"the test connection {client_ip} -> {server_ip}:{port}"
    return [
        Expected(f"{name} (connect)",
                 select={"pid": pid, "direction": "out"},
                 counters={"connections": 1, "bytes_sent": tcp_bytes},
                 gate=("skc_family",),
                 want={"proto": ("tcp", "sk_protocol"), "ip": (server_ip, daddr),
                       "local_ip": (client_ip, saddr), "port": (port, "skc_dport")}),
        Expected(f"{name} (accept)",
                 select={"direction": "in"},
                 counters={"accepts": 1, "bytes_received": tcp_bytes},
                 gate=("skc_family",),
                 want={"proto": ("tcp", "sk_protocol"), "ip": (client_ip, daddr),
                       "local_ip": (server_ip, saddr), "port": (port, "skc_num")}),
        Expected(f"{name} (listening socket)", listen=True,
                 select={"pid": pid}, gate=("sk_protocol", "skc_family"),
                 want={"ip": (server_ip, saddr), "port": (port, "skc_num")}),
    ]


def _udp_expected(family: int, client_ip: str, server_ip: str,
                  sizes: tuple[int, int], sockets: list) -> list[Expected]:
    """Make a test datagram and its reply; what the program must report."""
    pid = os.getpid()
    fl = "flowi6" if family == socket.AF_INET6 else "flowi4"
    request, reply = sizes
    port = _udp(family, client_ip, server_ip, request, reply, sockets)
    name = f"the test datagram {client_ip} -> {server_ip}:{port}"
    proto = ("udp", f"{fl}.flowic_proto")
    return [
        Expected(f"{name} (client)",
                 select={"pid": pid, "direction": "out"},
                 counters={"datagrams_sent": 1, "bytes_sent": request,
                           "datagrams_received": 1, "bytes_received": reply},
                 want={"proto": proto, "ip": (server_ip, f"{fl}.daddr"),
                       "local_ip": (client_ip, f"{fl}.saddr"),
                       "port": (port, f"{fl}.uli.ports.dport")}),
        Expected(f"{name} (server's reply)",
                 select={"pid": pid, "direction": "in"},
                 counters={"datagrams_sent": 1, "bytes_sent": reply,
                           "datagrams_received": 1, "bytes_received": request},
                 want={"proto": proto, "ip": (client_ip, f"{fl}.daddr"),
                       "local_ip": (server_ip, f"{fl}.saddr"),
                       "port": (port, f"{fl}.uli.ports.sport")}),
    ]


def _in_empty_netns(work):
    """work() on a thread of its own in a new network namespace (no interface
    but lo, down): its result, or the OSError that kept it from running there
    (no CAP_SYS_ADMIN, say)."""
    out: dict[str, object] = {}

    def thread() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        # unshare() moves this thread only; the namespace goes with it.
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            out["error"] = OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            return
        try:
            out["value"] = work()
        except OSError as exc:
            out["error"] = exc

    runner = threading.Thread(target=thread, name="portolan-self-test-no-route")
    runner.start()
    runner.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """Bring this namespace's lo up: its local routes make the route tables
    the lookup then searches (a namespace with none makes no lookup)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _unrouted_connect(family: int, ip: str, port: int) -> int:
    """A TCP connect to ip:port on an unbound socket, in a namespace with only
    lo up; the errno it failed with."""
    _loopback_up()
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.connect((ip, port))
        except OSError as exc:
            return exc.errno or 0
    return 0


def _no_route_expected(family: int, _client: str, _server: str, _sizes,
                       _sockets: list) -> list[Expected]:
    """Make a connect that fails for want of a route; what the program must
    report for it. OSError when no namespace can be made for it."""
    ip, port = NO_ROUTE[family], NO_ROUTE_PORT
    fl = "flowi6" if family == socket.AF_INET6 else "flowi4"
    err = _in_empty_netns(lambda: _unrouted_connect(family, ip, port))
    if err not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        raise OSError(err, f"a connect to {ip} with no route said "
                           f"{os.strerror(err) if err else 'nothing'}")
    # The lookup counts only as connect() on an unbound socket makes it.
    gate = (f"{fl}.flowic_oif", f"{fl}.uli.ports.sport", f"{fl}.saddr")
    if family == socket.AF_INET6:
        gate += ("fib6_result.fib6_type", "fib6_table.tb6_id")
    return [Expected(f"the test connect to {ip}:{port} with no route",
                     select={"pid": os.getpid(), "direction": "out"},
                     counters={"failed": 1, "failed_unreachable": 1},
                     gate=gate,
                     want={"proto": ("tcp", f"{fl}.flowic_proto"),
                           "ip": (ip, f"{fl}.daddr"),
                           "port": (port, f"{fl}.uli.ports.dport")})]


def run(tracer, udp4: bool = True, udp6: bool = True, route4: bool = False,
        route6: bool = False) -> TracerReading:
    """Make the test traffic, read ``tracer`` and check it; raise
    SelfTestFailed naming each field that disagreed. Returns the rest of what
    it read (the host's own traffic meanwhile), to be counted as usual.

    ``udp4`` / ``udp6``: whether the loaded program counts UDP in that family;
    ``route4`` / ``route6``: connects that fail for want of a route (its
    route hook is loaded). Where no network namespace can be made for the
    latter, that step is left out and a warning says so.
    Each step is read on its own, so that a small flow map holds it.
    """
    v4 = (socket.AF_INET, "127.0.0.1", "127.0.0.2")
    v6 = (socket.AF_INET6, "::1", "::1")
    # Sizes differ per family, so that neither family's flows pass for the
    # other's.
    steps = [(_tcp_expected, v4, 3), (_udp_expected, v4, (5, 2), udp4),
             (_no_route_expected, v4, None, route4)]
    if _ipv6_loopback():
        steps += [(_tcp_expected, v6, 6), (_udp_expected, v6, (7, 9), udp6),
                  (_no_route_expected, v6, None, route6)]
    problems: list[str] = []
    rest = TracerReading()
    skipped: list[str] = []
    for make, (family, client, server), sizes, *wanted in steps:
        if wanted and not wanted[0]:
            continue
        sockets: list[socket.socket] = []
        try:
            try:
                expected = make(family, client, server, sizes, sockets)
            except OSError as exc:
                if make is not _no_route_expected:
                    raise
                skipped.append(f"{NO_ROUTE[family]}: {exc}")
                continue
            reading = tracer.read()  # the listener still open
        finally:
            for s in sockets:
                s.close()
        found, own = check(reading.flows, reading.listens, expected)
        if found and reading.lost:
            found.append(f"({reading.lost} counts were lost to full maps)")
        problems += found
        mine = {id(f) for f in own}
        rest.flows += [f for f in reading.flows if id(f) not in mine]
        rest.lost += reading.lost
        rest.cgroups.update(reading.cgroups)
        rest.listens = reading.listens
    if skipped:
        log.warning("ebpf: self-test: connects with no route not checked (%s): "
                    "the route hooks' interface, table and source fields are "
                    "as the BTF says, untested", "; ".join(skipped))
    if problems:
        raise SelfTestFailed("; ".join(problems))
    return rest
