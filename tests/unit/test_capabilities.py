"""Capability parsing and what the collector lacks (collector/capabilities.py)."""

from __future__ import annotations

import pytest

from collector.capabilities import (
    CAPABILITY_BITS,
    missing_for_ebpf,
    missing_for_process_details,
    parse_effective,
)


def status_with(*names: str) -> str:
    mask = sum(1 << CAPABILITY_BITS[n] for n in names)
    return f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{mask:016x}\n"


@pytest.mark.parametrize("names", [
    (), ("CAP_BPF",), ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"),
    tuple(CAPABILITY_BITS),
])
def test_parse_effective_reads_back_the_bits(names):
    assert parse_effective(status_with(*names)) == frozenset(names)


def test_parse_effective_ignores_capabilities_it_does_not_name():
    # A full root set (40 bits) names only the ones the collector asks about.
    assert parse_effective("CapEff:\t000001ffffffffff\n") == frozenset(CAPABILITY_BITS)


def test_parse_effective_reads_CapEff_not_CapPrm():
    text = "CapPrm:\t000000c000000000\nCapEff:\t0000000000000000\n"
    assert parse_effective(text) == frozenset()


@pytest.mark.parametrize(("held", "kernel", "missing"), [
    ({"CAP_BPF", "CAP_PERFMON"}, (6, 18), []),
    ({"CAP_BPF"}, (6, 18), ["CAP_PERFMON"]),
    (set(), (5, 8), ["CAP_BPF", "CAP_PERFMON"]),
    ({"CAP_SYS_ADMIN"}, (6, 1), []),  # contains both
    ({"CAP_BPF", "CAP_PERFMON"}, (5, 4), ["CAP_SYS_ADMIN"]),  # before 5.8
    ({"CAP_SYS_ADMIN"}, (4, 19), []),
])
def test_missing_for_ebpf(held, kernel, missing):
    assert missing_for_ebpf(frozenset(held), kernel) == missing


def test_process_details_need_sys_ptrace():
    assert missing_for_process_details(frozenset({"CAP_BPF"})) == ["CAP_SYS_PTRACE"]
    assert missing_for_process_details(frozenset({"CAP_SYS_PTRACE"})) == []
