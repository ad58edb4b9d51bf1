# ruff: noqa: E501 - recorded /proc text is kept byte for byte
"""Parsing /proc/net/tcp{,6} text recorded from real hosts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from collector.procfs import (
    TCP_ESTABLISHED,
    TCP_LISTEN,
    ProcfsTracer,
    TcpSocket,
    decode_address,
    is_inbound,
    parse_proc_net_tcp,
)

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B663 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17467 1 00000000f2f3a602 100 0 0 10 0
   2: 020011AC:1F90 030011AC:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 41000 1 0000000000000000 20 4 30 10 -1
   3: 030011AC:D2F0 020011AC:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
garbage line
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000001000000:9C40 01 00000000:00000000 00:00000000 00000000     0        0 5002 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000030011AC:A000 01 00000000:00000000 00:00000000 00000000     0        0 5003 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 5004 1 0000000000000000 20 4 30 10 -1
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0100007F:1F90", ("127.0.0.1", 8080)),
        ("00000000:0000", ("0.0.0.0", 0)),
        ("020011AC:D2F0", ("172.17.0.2", 54000)),
        ("00000000000000000000000001000000:0050", ("::1", 80)),
        ("0000000000000000FFFF0000020011AC:0050", ("172.17.0.2", 80)),
        ("B80D0120000000000000000001000000:01BB", ("2001:db8::1", 443)),
    ],
)
def test_decode_address(text, expected):
    assert decode_address(text) == expected


def test_parse_tcp():
    sockets = parse_proc_net_tcp(TCP)
    assert len(sockets) == 4
    assert sockets[0] == TcpSocket("0.0.0.0", 8080, "0.0.0.0", 0, TCP_LISTEN, 31337)
    assert sockets[2] == TcpSocket(
        "172.17.0.2", 8080, "172.17.0.3", 54000, TCP_ESTABLISHED, 41000
    )
    assert sockets[3].state == 0x06  # TIME_WAIT, no owner inode
    assert sockets[3].inode == 0


def test_parse_tcp6():
    sockets = parse_proc_net_tcp(TCP6)
    assert [s.local_ip for s in sockets] == ["::", "::1", "172.17.0.2", "2001:db8::1"]
    assert sockets[1].remote_port == 40000
    assert sockets[2].remote_ip == "172.17.0.3"
    assert sockets[3].state == TCP_ESTABLISHED


@pytest.mark.parametrize(
    "text", ["", "header only\n", "h\n 0: zz:zz 00:00 01 x x x x x x\n"]
)
def test_parse_tolerates_junk(text):
    assert parse_proc_net_tcp(text) == []


@pytest.mark.parametrize(
    ("local", "remote", "servers", "expected"),
    [
        (8080, 41000, {8080}, True),
        (41000, 8080, {8080}, False),  # loopback: the client end in the same netns
        (41000, 8080, set(), False),
        (22, 50000, set(), True),
        (40000, 50000, set(), False),
        (80, 443, set(), False),
    ],
)
def test_is_inbound(local, remote, servers, expected):
    assert is_inbound(local, remote, servers) is expected


@pytest.mark.parametrize(
    ("local", "remote", "before", "expected"),
    [
        (40000, 50000, {40000}, True),  # `nc -l 40000` closed its listener
        (45123, 443, {45123}, False),  # a client on a port that once listened
        (50000, 5432, {5432}, False),
    ],
)
def test_is_inbound_with_ports_that_listened_before(local, remote, before, expected):
    assert is_inbound(local, remote, set(), before) is expected


def _fake_proc(tmp_path, tcp_text: str):
    """A /proc with one process (pid 7, comm srv) owning inodes 31337 and 41000."""
    proc = tmp_path / "proc"
    cg = tmp_path / "cgroup"
    (cg / "docker" / "c1").mkdir(parents=True)
    pid = proc / "7"
    (pid / "ns").mkdir(parents=True)
    (pid / "ns" / "net").write_text("")
    (pid / "net").mkdir()
    (pid / "net" / "tcp").write_text(tcp_text)
    (pid / "comm").write_text("srv\n")
    (pid / "cgroup").write_text("0::/docker/c1\n")
    (pid / "fd").mkdir()
    os.symlink("socket:[31337]", pid / "fd" / "3")
    os.symlink("socket:[41000]", pid / "fd" / "4")
    os.symlink("/dev/null", pid / "fd" / "0")
    return proc, cg, os.stat(cg / "docker" / "c1").st_ino


def test_procfs_tracer_counts_new_connections_once(tmp_path):
    proc, cg, cgroup_id = _fake_proc(tmp_path, TCP)
    tracer = ProcfsTracer(proc=proc, cgroup_root=cg)
    first = tracer.read()
    assert [(ls.pid, ls.comm, ls.port, ls.cgroup_id) for ls in first.listens] == [
        (7, "srv", 8080, cgroup_id),
        (0, "", 46691, 0),
    ]
    (flow,) = first.flows
    assert (flow.direction, flow.ip, flow.port, flow.pid, flow.cgroup_id) == (
        "in",
        "172.17.0.3",
        8080,
        7,
        cgroup_id,
    )
    assert flow.counters == {"accepts": 1}
    assert tracer.read().flows == []  # same connection: nothing new
    (proc / "7" / "net" / "tcp").write_text(TCP.replace("D2F0", "D2F1"))
    (again,) = tracer.read().flows
    assert again.counters == {"accepts": 1}


@pytest.mark.parametrize("reaped", [True, False])
def test_a_namespace_read_through_a_process_that_exits_loses_nothing(tmp_path,
                                                                      reaped):
    """The namespace is read through its lowest pid; when that one exits
    mid-read (a health-check exec, say), another is used, and connections
    already counted are not counted again. Unreaped, it keeps /proc/<pid>
    but loses its namespace and tables."""
    import shutil

    proc, cg, _ = _fake_proc(tmp_path, TCP)
    short = proc / "3"
    for sub in ("ns", "net", "fd"):
        (short / sub).mkdir(parents=True)
    os.link(proc / "7" / "ns" / "net", short / "ns" / "net")
    os.link(proc / "7" / "net" / "tcp", short / "net" / "tcp")
    (short / "comm").write_text("healthcheck\n")
    (short / "cgroup").write_text("0::/docker/c1\n")
    tracer = ProcfsTracer(proc=proc, cgroup_root=cg)
    assert [f.counters for f in tracer.read().flows] == [{"accepts": 1}]
    owners = tracer._socket_owners

    def then_pid_3_exits(pids):
        found = owners(pids)
        if reaped:
            shutil.rmtree(short)
        else:
            (short / "ns" / "net").unlink()
            (short / "net" / "tcp").unlink()
        return found

    tracer._socket_owners = then_pid_3_exits
    assert tracer.read().flows == []
    tracer._socket_owners = owners
    assert tracer.read().flows == []


def test_a_zombie_is_not_read_as_an_empty_namespace():
    """The real /proc: an exited, unreaped child keeps /proc/<pid> but has no
    tables; its namespace is read through the next process."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}/ns/net").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # until it has exited (a zombie)
        assert Path(f"/proc/{pid}").exists()
        tracer = ProcfsTracer()
        read_pid, _ = tracer._read_tables([pid, os.getpid()])
        assert read_pid == os.getpid()
    finally:
        os.waitpid(pid, 0)
