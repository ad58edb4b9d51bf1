"""Which eBPF program the collector loads: the raw hooks (kernel fields at the
offsets of the running kernel's BTF) only when their self-test passes, else
the tracepoint program, saying why. Real kernel, real BTF, real loopback
traffic; the layouts that are wrong are made by moving one real offset."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.ebpf]


@pytest.fixture(scope="module")
def fields(ebpf_ready):
    from collector.ebpf.tracer import ConnectionTracer

    return ConnectionTracer.raw_fields()


def _counts_a_connection(tracer) -> None:
    """The tracer counts one loopback connection exactly (whichever program)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    tracer.read()
    with socket.create_connection(("127.0.0.1", port)) as c:
        listener.accept()[0].close()
        c.sendall(b"abc")
    listener.close()
    flows = [f for f in tracer.read().flows
             if f.pid == os.getpid() and f.port == port and f.direction == "out"]
    assert sum(f.counters["connections"] for f in flows) == 1
    assert {(f.ip, f.local_ip, f.proto) for f in flows} == {
        ("127.0.0.1", "127.0.0.1", "tcp")}


def test_the_default_is_the_raw_program_here(ebpf_ready):
    from collector.ebpf.tracer import ConnectionTracer

    tracer = ConnectionTracer()
    try:
        assert (tracer.program, tracer.program_note) == ("raw", "")
        assert tracer.fields is not None
        _counts_a_connection(tracer)
    finally:
        tracer.close()


# One field of each struct the raw hooks read, moved as a kernel whose layout
# changed would move it; the field the self-test must name.
SHIFTED = [
    ("SK_DPORT", 2, "skc_dport"),
    ("SK_NUM", -2, "skc_num"),
    ("SK_DADDR", 4, "skc_daddr"),
    ("SK_V6_RCV_SADDR", 16, "skc_v6_rcv_saddr"),
    ("SK_PROTOCOL", 1, "sk_protocol"),
    ("FL4_DPORT", 2, "flowi4.uli.ports.dport"),
    ("FL4_SADDR", 4, "flowi4.saddr"),
    ("FL6_SPORT", -2, "flowi6.uli.ports.sport"),
]


@pytest.mark.parametrize(("name", "by", "named"), SHIFTED)
def test_a_shifted_field_fails_the_self_test_and_falls_back(fields, name, by, named,
                                                            caplog):
    from collector.ebpf.tracer import ConnectionTracer

    if name.startswith(("SK_V6", "FL6")):
        require(os.path.exists("/proc/net/if_inet6"), "no IPv6")
    with caplog.at_level(logging.WARNING, logger="portolan.collector.ebpf"):
        tracer = ConnectionTracer(fields=fields.shifted(name, by))
    try:
        assert tracer.program == "tracepoint"
        assert tracer.fields is None
        assert tracer.program_note.startswith("raw hooks not used (")
        assert f"{named} says" in tracer.program_note or (
            "not seen at all (read from" in tracer.program_note
            and named in tracer.program_note), tracer.program_note
        assert tracer.program_note in caplog.text
        # The fallback counts as the tracepoint program does.
        _counts_a_connection(tracer)
    finally:
        tracer.close()


def test_raw_insisted_on_with_a_shifted_field_refuses_to_load(fields):
    from collector.ebpf.tracer import ConnectionTracer, EbpfUnavailable

    with pytest.raises(EbpfUnavailable, match=r"raw hooks: .*skc_dport says port"):
        ConnectionTracer(program="raw", fields=fields.shifted("SK_DPORT", 2))


def test_a_kernel_without_btf_falls_back(ebpf_ready, tmp_path):
    from collector.ebpf.tracer import ConnectionTracer, EbpfUnavailable

    missing = tmp_path / "vmlinux"
    tracer = ConnectionTracer(btf_path=missing)
    try:
        assert tracer.program == "tracepoint"
        assert f"no BTF at {missing}" in tracer.program_note
        _counts_a_connection(tracer)
    finally:
        tracer.close()
    with pytest.raises(EbpfUnavailable, match="no BTF at"):
        ConnectionTracer(btf_path=missing, program="raw")


def test_the_collector_says_why_it_fell_back(ebpf_ready, tmp_path, monkeypatch,
                                             caplog):
    """open_tracer (the collector's start) on a kernel without BTF: the eBPF
    tracer still loads, the tracepoint program, and the log says why."""
    from collector import agent
    from collector.ebpf import btf

    monkeypatch.setattr(btf, "KERNEL_BTF", tmp_path / "no-btf")
    with caplog.at_level(logging.INFO):
        tracer, reason = agent.open_tracer()
    try:
        assert reason == ""
        assert tracer.mode == "ebpf" and tracer.program == "tracepoint"
        assert f"raw hooks not used (no BTF at {tmp_path / 'no-btf'}" in caplog.text
        assert "eBPF tracer: tracepoint program (raw hooks not used" in caplog.text
    finally:
        tracer.close()


def test_the_self_test_passes_on_the_tracepoint_program(ebpf_ready):
    """What the self-test expects is the kernel's own account: the tracepoint
    program (fields copied by the kernel itself) reports exactly that too."""
    from collector.ebpf import self_test
    from collector.ebpf.tracer import ConnectionTracer

    tracer = ConnectionTracer(program="tracepoint")
    try:
        rest = self_test.run(tracer)
        assert all(f.pid != os.getpid() or f.proto not in ("tcp", "udp")
                   or f.ip not in ("127.0.0.2", "::1") for f in rest.flows)
    finally:
        tracer.close()


def test_ebpf_dump_shows_the_offsets_and_their_source(ebpf_ready, repo_root):
    from collector.ebpf import btf

    out = subprocess.run([sys.executable, "-m", "collector", "--ebpf-dump"],
                         cwd=repo_root, capture_output=True, text=True,
                         check=True).stdout
    head = out.split("#line", 1)[0]
    assert f"offsets from BTF {btf.KERNEL_BTF}" in head
    sock = btf.load().member("sock.__sk_common.skc_dport")
    assert (f"SK_DPORT sock.__sk_common.skc_dport: byte {sock.offset}, 2 bytes"
            in head)
    assert f"#define F_SK_DPORT_OFF {sock.offset}\n" in head
    assert "RAW_TRACEPOINT_PROBE(inet_sock_set_state)" in out
    env = dict(os.environ, PORTOLAN_EBPF_PROGRAM="tracepoint")
    tracepoints = subprocess.run([sys.executable, "-m", "collector", "--ebpf-dump"],
                                 cwd=repo_root, env=env, capture_output=True,
                                 text=True, check=True).stdout
    assert "-DRAW_HOOKS" not in tracepoints.splitlines()[0]
    assert "tracepoint program (reads tracepoint arguments only)" in tracepoints
