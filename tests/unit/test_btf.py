"""The BTF reader: on blobs built here (layouts known by construction, both
byte orders), on the running kernel's /sys/kernel/btf/vmlinux (checked member
by member against bpftool's own dump) and on a missing or broken file."""

from __future__ import annotations

import functools
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collector.ebpf import btf
from tests.conftest import require

# --------------------------------------------------------- a blob built here


class BlobBuilder:
    """Just enough of a BTF writer to describe the layouts the tests need."""

    def __init__(self):
        self.strings = b"\0"
        self.types: list[bytes] = []

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind, name, size_or_type, vlen=0, kind_flag=False, extra=b""):
        info = (kind << 24) | vlen | (1 << 31 if kind_flag else 0)
        self.types.append(struct.pack(self.order + "III", self.name(name), info,
                                      size_or_type) + extra)
        return len(self.types)  # its id

    def int_(self, name, size, bits=None, offset=0):
        encoding = (bits if bits is not None else size * 8) | (offset << 16)
        return self.add(btf.INT, name, size, extra=struct.pack(self.order + "I",
                                                                encoding))

    def composite(self, kind, name, size, members, kind_flag=False):
        extra = b"".join(struct.pack(self.order + "III", self.name(n), t, o)
                         for n, t, o in members)
        return self.add(kind, name, size, len(members), kind_flag, extra)

    def blob(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack(self.order + "HBBIIIII", btf.MAGIC, 1, 0, 24, 0,
                             len(types), len(types), len(self.strings))
        return header + types + self.strings


def sample_blob(order: str) -> bytes:
    """struct outer { u32 a; union { struct { u16 lo; u16 hi; }; u32 both; };
    u8 f1:3, f2:5; const volatile u16 (typedef port_t) port; struct inner in;
    int old:4 (an old-style bitfield); };"""
    b = BlobBuilder()
    b.order = order
    u8, u16, u32 = b.int_("u8", 1), b.int_("u16", 2), b.int_("u32", 4)
    port_t = b.add(btf.TYPEDEF, "port_t", u16)
    cv = b.add(btf.CONST, "", b.add(btf.VOLATILE, "", port_t))
    pair = b.composite(btf.STRUCT, "", 4, [("lo", u16, 0), ("hi", u16, 16)])
    anon = b.composite(btf.UNION, "", 4, [("", pair, 0), ("both", u32, 0)])
    inner = b.composite(btf.STRUCT, "inner", 8, [("x", u32, 0), ("y", u32, 32)])
    old4 = b.int_("int", 4, bits=4, offset=2)
    flagged = b.composite(btf.STRUCT, "flags_t", 1,
                          [("f1", u8, (3 << 24) | 0), ("f2", u8, (5 << 24) | 3)],
                          kind_flag=True)
    b.composite(btf.STRUCT, "outer", 28, [
        ("a", u32, 0), ("", anon, 32), ("", flagged, 64), ("port", cv, 80),
        ("in", inner, 96), ("old", old4, 160)])
    proto = b.add(btf.FUNC_PROTO, "", 0, 2, extra=struct.pack(
        order + "IIII", 0, b.add(btf.PTR, "", 0), 0, b.add(btf.PTR, "", inner)))
    b.add(btf.TYPEDEF, "btf_trace_thing", b.add(btf.PTR, "", proto))
    return b.blob()


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("path", "bit_offset", "size", "bits"), [
    ("outer.a", 0, 4, 0),
    ("outer.lo", 32, 2, 0),      # inside an anonymous struct in an anonymous union
    ("outer.hi", 48, 2, 0),
    ("outer.both", 32, 4, 0),
    ("outer.f1", 64, 1, 3),      # kind_flag bitfields
    ("outer.f2", 67, 1, 5),
    ("outer.port", 80, 2, 0),    # through const, volatile and a typedef
    ("outer.in.y", 128, 4, 0),   # a named nested struct
    ("outer.old", 162, 4, 4),    # an int whose encoding makes it a bitfield
])
def test_members_of_a_built_blob(order, path, bit_offset, size, bits):
    found = btf.parse(sample_blob(order)).member(path)
    assert (found.bit_offset, found.size, found.bits) == (bit_offset, size, bits)
    assert found.offset == bit_offset // 8


def test_trace_args_of_a_built_blob():
    assert btf.parse(sample_blob("<")).trace_args("thing") == ["struct inner *"]


@pytest.mark.parametrize(("path", "message"), [
    ("nosuch.a", "no struct nosuch"),
    ("outer.zz", "outer has no member zz"),
    ("outer.in.zz", "outer.in has no member zz"),
    ("outer", "expected struct.member"),
])
def test_unknown_members_are_named(path, message):
    with pytest.raises(btf.BtfError, match=message):
        btf.parse(sample_blob("<")).member(path)


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "too short"),
    (b"\x00\x01" + bytes(30), "not BTF"),
    (sample_blob("<")[:100], "run past the end"),
])
def test_broken_blobs_are_refused(blob, message):
    with pytest.raises(btf.BtfError, match=message):
        btf.parse(blob)


def test_a_missing_file_says_the_kernel_has_no_btf(tmp_path):
    with pytest.raises(btf.BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        btf.load(tmp_path / "vmlinux")


# ------------------------------------------------------ the running kernel's

STRUCTS = ("sock_common", "sock", "flowi_common", "flowi4", "flowi6",
           "fib6_result", "fib6_table", "inet_sock")


@pytest.fixture(scope="module")
def kernel_btf():
    require(btf.KERNEL_BTF.exists(), f"no {btf.KERNEL_BTF}")
    return btf.load()


@functools.cache
def bpftool_dump() -> str:
    return subprocess.run(
        ["bpftool", "btf", "dump", "file", str(btf.KERNEL_BTF), "format", "raw"],
        capture_output=True, text=True, check=True).stdout


def bpftool_members(name: str) -> tuple[int, list[tuple[str, int, int]]]:
    """bpftool's own reading of struct ``name``: its type id and its named
    top-level members (name, bit offset, bitfield width)."""
    out = bpftool_dump()
    head = re.search(rf"^\[(\d+)\] STRUCT '{name}' size=\d+ vlen=\d+\n((?:\t.*\n)*)",
                     out, re.M)
    assert head, f"bpftool shows no struct {name}"
    members = [
        (m[1], int(m[2]), int(m[3] or 0))
        for m in re.finditer(r"\t'([^']+)' type_id=\d+ bits_offset=(\d+)"
                             r"(?: bitfield_size=(\d+))?", head[2])
        if m[1] != "(anon)"
    ]
    return int(head[1]), members


@pytest.mark.parametrize("name", STRUCTS)
def test_kernel_structs_agree_with_bpftool(kernel_btf, name):
    require(shutil.which("bpftool") is not None, "bpftool is not installed")
    type_id, members = bpftool_members(name)
    assert kernel_btf.struct_id(name) == type_id
    assert members
    for member, bit_offset, bits in members:
        found = kernel_btf.member(f"{name}.{member}")
        assert (found.bit_offset, found.bits) == (bit_offset, bits), member


def test_kernel_fields_the_raw_program_reads(kernel_btf):
    """sock_common's first words have kept their layout since 2.6 (the
    tracepoint's fields come from them): addresses, then the port pair, then
    the family."""
    expect = {"skc_daddr": (0, 4), "skc_rcv_saddr": (4, 4), "skc_dport": (12, 2),
              "skc_num": (14, 2), "skc_family": (16, 2)}
    for field, (offset, size) in expect.items():
        found = kernel_btf.member(f"sock.__sk_common.{field}")
        assert (found.offset, found.size, found.bits) == (offset, size, 0), field
    assert kernel_btf.member("sock_common.skc_v6_daddr").size == 16
    assert kernel_btf.trace_args("inet_sock_set_state") == [
        "struct sock *", "int", "int"]
    assert kernel_btf.trace_args("fib_table_lookup")[1] == "struct flowi4 *"


def test_kernel_btf_path_is_the_sysfs_file():
    assert btf.KERNEL_BTF == Path("/sys/kernel/btf/vmlinux")
