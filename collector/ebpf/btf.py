"""Read struct member offsets from the running kernel's BTF.

Why: the raw tracepoint programs (raw_hooks.h) get kernel pointers (``struct
sock``, ``struct flowi4``...) and must read a few of their fields. Installed
headers need not match the running kernel; its own BTF
(/sys/kernel/btf/vmlinux) describes exactly the layout it was built with. This
is the idea of CO-RE, done at load time for bcc: each member's offset and size
is found here and passed to the program as -D constants.

The format (Documentation/bpf/btf.rst): a header (magic 0xEB9F, version,
flags, header length, then offset and length of the type and string sections,
relative to the end of the header), a type section of variable-length
records (``struct btf_type`` then kind-specific data; type ids count from 1 in
file order, 0 is void) and a string section of NUL-terminated names. Only what
member lookup needs is decoded: struct and union members (through anonymous
members, typedefs and qualifiers, with bitfield offsets), sizes, and the
prototypes behind the ``btf_trace_<event>`` typedefs of raw tracepoints.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KERNEL_BTF",
    "Btf",
    "BtfError",
    "Member",
    "load",
    "parse",
]

KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F

# Kinds (include/uapi/linux/btf.h).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19
_QUALIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
# Bytes of kind-specific data after the 12-byte btf_type: fixed, per member.
_EXTRA = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12),
          ENUM: (0, 8), FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12),
          DECL_TAG: (4, 0), ENUM64: (0, 12)}
POINTER_SIZE = 8  # BTF does not say; every 64-bit kernel


class BtfError(ValueError):
    """The BTF cannot be read, or lacks what was asked; the message says which."""


@dataclass(frozen=True, slots=True)
class Member:
    """Where a (possibly nested) member lies in its outermost struct.

    ``bits`` is the width of a bitfield, else 0; ``size`` is the byte size of
    the member's type (of the storage unit, for a bitfield).
    """

    path: str
    bit_offset: int
    size: int
    bits: int = 0

    @property
    def offset(self) -> int:
        """Byte offset of the member (of the byte holding a bitfield's first bit)."""
        return self.bit_offset // 8


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int       # size for INT/STRUCT/UNION/ENUM..., else a type id
    kind_flag: bool
    data: tuple             # members, array info, int encoding, params


class Btf:
    """The types of one BTF blob, looked up by name and member path."""

    def __init__(self, types: list[_Type | None], source: str = "<bytes>"):
        self._types = types
        self.source = source
        self._by_name: dict[tuple[int, str], int] = {}
        for type_id, t in enumerate(types):
            if t is not None and t.name:
                # The first complete definition wins (a FWD has no members).
                self._by_name.setdefault((t.kind, t.name), type_id)

    def __len__(self) -> int:
        return len(self._types) - 1

    def _resolve(self, type_id: int) -> int:
        """The type id behind typedefs and qualifiers."""
        for _ in range(64):
            t = self._types[type_id]
            if t is None or t.kind not in _QUALIFIERS:
                return type_id
            type_id = t.size_or_type
        raise BtfError(f"type {type_id}: typedef chain too long")

    def size_of(self, type_id: int) -> int:
        """Byte size of a type (0 for void and functions)."""
        type_id = self._resolve(type_id)
        t = self._types[type_id]
        if t is None:
            return 0
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size_or_type
        if t.kind == PTR:
            return POINTER_SIZE
        if t.kind == ARRAY:
            elem, _index, count = t.data
            return self.size_of(elem) * count
        return 0

    def struct_id(self, name: str) -> int:
        """The id of the struct (or union) called ``name``."""
        for kind in (STRUCT, UNION):
            if (kind, name) in self._by_name:
                return self._by_name[(kind, name)]
        raise BtfError(f"{self.source}: no struct {name}")

    def _find(self, type_id: int, name: str) -> tuple[int, int, int] | None:
        """(bit offset, bitfield width, type id) of member ``name`` of a
        struct or union, looking into anonymous members."""
        t = self._types[self._resolve(type_id)]
        if t is None or t.kind not in (STRUCT, UNION):
            return None
        for m_name, m_type, m_offset in t.data:
            if t.kind_flag:
                bits, bit_offset = m_offset >> 24, m_offset & 0xFFFFFF
            else:
                bits, bit_offset = 0, m_offset
                inner = self._types[self._resolve(m_type)]
                if inner is not None and inner.kind == INT:
                    # Old-style bitfield: the int's own encoding says so.
                    nr_bits, int_offset = inner.data
                    if nr_bits != inner.size_or_type * 8:
                        bits, bit_offset = nr_bits, bit_offset + int_offset
            if m_name == name:
                return bit_offset, bits, m_type
            if not m_name:
                found = self._find(m_type, name)
                if found is not None:
                    return found[0] + bit_offset, found[1], found[2]
        return None

    def member(self, path: str) -> Member:
        """``"struct.member.inner"`` -> where it lies in ``struct``.

        Anonymous structs and unions are looked into, so ``sock_common.skc_num``
        finds the port inside its unnamed union.
        """
        struct_name, *names = path.split(".")
        if not names:
            raise BtfError(f"{path!r}: expected struct.member")
        type_id = self.struct_id(struct_name)
        bit_offset, bits = 0, 0
        for depth, name in enumerate(names):
            found = self._find(type_id, name)
            if found is None:
                within = ".".join([struct_name, *names[:depth]])
                raise BtfError(f"{self.source}: {within} has no member {name}")
            offset, bits, type_id = found
            bit_offset += offset
        return Member(path, bit_offset, self.size_of(type_id), bits)

    def trace_args(self, event: str) -> list[str]:
        """The argument types of raw tracepoint ``event`` (its
        ``btf_trace_<event>`` prototype, less the leading context pointer),
        named as C would: ``struct sock *``, ``int``..."""
        key = (TYPEDEF, f"btf_trace_{event}")
        if key not in self._by_name:
            raise BtfError(f"{self.source}: no raw tracepoint {event}")
        ptr = self._types[self._resolve(self._by_name[key])]
        proto = self._types[ptr.size_or_type] if ptr and ptr.kind == PTR else None
        if proto is None or proto.kind != FUNC_PROTO:
            raise BtfError(f"{self.source}: btf_trace_{event} is not a prototype")
        return [self.type_name(param) for _name, param in proto.data[1:]]

    def type_name(self, type_id: int) -> str:
        """A type as C spells it, without qualifiers: ``struct flowi4 *``."""
        type_id = self._resolve(type_id)
        t = self._types[type_id]
        if t is None:
            return "void"
        if t.kind == PTR:
            return self.type_name(t.size_or_type) + " *"
        prefix = {STRUCT: "struct ", UNION: "union ", ENUM: "enum ", FWD: "struct "}
        return prefix.get(t.kind, "") + (t.name or "?")


def parse(blob: bytes, source: str = "<bytes>") -> Btf:
    """Decode a BTF blob (either byte order)."""
    if len(blob) < 24:
        raise BtfError(f"{source}: {len(blob)} bytes is too short for a BTF header")
    for order in "<>":
        if struct.unpack_from(order + "H", blob)[0] == MAGIC:
            break
    else:
        raise BtfError(f"{source}: not BTF (bad magic {blob[:2].hex()})")
    _magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
        struct.unpack_from(order + "HBBIIIII", blob))
    if version != 1:
        raise BtfError(f"{source}: BTF version {version}, expected 1")
    types_start, strings_start = hdr_len + type_off, hdr_len + str_off
    if (types_start + type_len > len(blob) or strings_start + str_len > len(blob)):
        raise BtfError(f"{source}: sections run past the end ({len(blob)} bytes)")
    strings = blob[strings_start:strings_start + str_len]

    def name_at(offset: int) -> str:
        if offset >= len(strings):
            raise BtfError(f"{source}: name offset {offset} outside the strings")
        return strings[offset:strings.index(b"\0", offset)].decode("utf-8", "replace")

    types: list[_Type | None] = [None]  # id 0: void
    pos, end = types_start, types_start + type_len
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from(order + "III", blob, pos)
        pos += 12
        kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
        fixed, per_item = _EXTRA.get(kind, (0, 0))
        if kind > ENUM64 or kind == 0:
            raise BtfError(f"{source}: unknown type kind {kind} at byte {pos - 12}")
        data: tuple = ()
        if kind == INT:
            (encoding,) = struct.unpack_from(order + "I", blob, pos)
            data = (encoding & 0xFF, (encoding >> 16) & 0xFF)
        elif kind == ARRAY:
            data = struct.unpack_from(order + "III", blob, pos)
        elif kind in (STRUCT, UNION):
            data = tuple(
                (name_at(m_name), m_type, m_offset)
                for m_name, m_type, m_offset in struct.iter_unpack(
                    order + "III", blob[pos:pos + 12 * vlen]))
        elif kind == FUNC_PROTO:
            data = tuple(
                (name_at(p_name), p_type)
                for p_name, p_type in struct.iter_unpack(
                    order + "II", blob[pos:pos + 8 * vlen]))
        pos += fixed + per_item * vlen
        types.append(_Type(kind, name_at(name_off), size_or_type, kind_flag, data))
    if pos != end:
        raise BtfError(f"{source}: the type section does not end on a type")
    return Btf(types, source)


def load(path: Path | str = KERNEL_BTF) -> Btf:
    """The BTF at ``path`` (the running kernel's by default).

    A kernel built without CONFIG_DEBUG_INFO_BTF has no such file: BtfError
    says so.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise BtfError(f"no BTF at {path} (a kernel built without "
                       "CONFIG_DEBUG_INFO_BTF)") from None
    except OSError as exc:
        raise BtfError(f"cannot read BTF at {path}: {exc}") from None
    return parse(blob, str(path))
