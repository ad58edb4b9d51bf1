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
    # Read only for a connect that finds no route (the self-test makes one).
    ("FL4_OIF", 4, "flowi4.flowic_oif"),
    ("FL6_OIF", 4, "flowi6.flowic_oif"),
    ("FIB6_TB_ID", 4, "fib6_table.tb6_id"),
]


@pytest.mark.parametrize(("name", "by", "named"), SHIFTED)
def test_a_shifted_field_fails_the_self_test_and_falls_back(fields, name, by, named,
                                                            caplog):
    from collector.ebpf.tracer import ConnectionTracer

    if name.startswith(("SK_V6", "FL6", "FIB6")):
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
        rest = self_test.run(tracer, route4=True, route6=True)
        test_ips = ("127.0.0.2", "::1", *self_test.NO_ROUTE.values())
        assert all(f.pid != os.getpid() or f.proto not in ("tcp", "udp")
                   or f.ip not in test_ips for f in rest.flows)
    finally:
        tracer.close()


def test_fields_too_far_apart_to_read_at_once_fall_back(ebpf_ready, monkeypatch):
    """The raw hooks read each span of fields (kernel_fields.SPANS) at once
    into a buffer of at most SPAN_MAX bytes; a kernel whose fields lie further
    apart gets the tracepoint program (here: a smaller limit than this
    kernel's flowi6 span)."""
    from collector.ebpf import kernel_fields
    from collector.ebpf.tracer import ConnectionTracer

    monkeypatch.setattr(kernel_fields, "SPAN_MAX", 16)
    tracer = ConnectionTracer()
    try:
        assert tracer.program == "tracepoint"
        assert "more than the 16 the program reads at once" in tracer.program_note
        _counts_a_connection(tracer)
    finally:
        tracer.close()


def test_no_namespace_for_the_no_route_step_is_said(ebpf_ready, monkeypatch, caplog):
    """Where the collector may not make a network namespace, the self-test
    leaves out its connect with no route, says so, and the rest decides
    (simulated with a flag unshare() refuses on a threaded process)."""
    from collector.ebpf import self_test
    from collector.ebpf.tracer import ConnectionTracer

    monkeypatch.setattr(self_test, "CLONE_NEWNET", 0x10000000)  # CLONE_NEWUSER
    monkeypatch.setattr(ConnectionTracer, "_fields_checked", set())
    with caplog.at_level(logging.WARNING, logger="portolan.collector.ebpf"):
        tracer = ConnectionTracer(program="raw")
    try:
        assert "connects with no route not checked (192.0.2.1: " in caplog.text
        _counts_a_connection(tracer)
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
