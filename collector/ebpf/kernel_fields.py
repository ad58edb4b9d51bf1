"""The kernel struct fields the raw hooks read, at offsets from the kernel's BTF.

Why: raw tracepoints (raw_hooks.h) skip the event record the kernel builds
for a tracepoint program (a third of the cost on the route lookups), but hand
the program only pointers: ``struct sock`` for sock:inet_sock_set_state,
``struct flowi4`` for fib:fib_table_lookup, ``struct fib6_result``,
``struct fib6_table`` and ``struct flowi6`` for fib6:fib6_table_lookup. Their
fields are read at the offsets the running kernel's own BTF gives, never from
installed headers, and passed to the program as -D constants
(``F_<NAME>_OFF``, ``_SIZE``, and ``_SHIFT`` / ``_BITS`` for a bitfield). The
prototypes of the three raw tracepoints are checked in the BTF too, so an
argument that moved is caught here, and the collector's start-up self-test
(collector.ebpf.self_test) checks what the program then reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from collector.ebpf import btf

__all__ = ["FIELDS", "SPANS", "FieldsUnavailable", "KernelField", "KernelFields",
           "resolve"]

# Name in the program -> (BTF member path, the sizes the program accepts).
# Integers are read whatever their width (1, 2, 4 or 8 bytes, or a bitfield);
# addresses must be exactly 4 or 16 bytes.
_INT = (1, 2, 4, 8)
FIELDS = {
    "SK_FAMILY": ("sock.__sk_common.skc_family", _INT),
    "SK_PROTOCOL": ("sock.sk_protocol", _INT),  # a bitfield before 5.6
    "SK_DPORT": ("sock.__sk_common.skc_dport", (2,)),  # network order
    "SK_NUM": ("sock.__sk_common.skc_num", _INT),  # local port, host order
    "SK_DADDR": ("sock.__sk_common.skc_daddr", (4,)),
    "SK_RCV_SADDR": ("sock.__sk_common.skc_rcv_saddr", (4,)),
    "SK_V6_DADDR": ("sock.__sk_common.skc_v6_daddr", (16,)),
    "SK_V6_RCV_SADDR": ("sock.__sk_common.skc_v6_rcv_saddr", (16,)),
    "FL4_OIF": ("flowi4.__fl_common.flowic_oif", _INT),
    "FL4_PROTO": ("flowi4.__fl_common.flowic_proto", _INT),
    "FL4_SADDR": ("flowi4.saddr", (4,)),
    "FL4_DADDR": ("flowi4.daddr", (4,)),
    "FL4_SPORT": ("flowi4.uli.ports.sport", (2,)),
    "FL4_DPORT": ("flowi4.uli.ports.dport", (2,)),
    "FL6_OIF": ("flowi6.__fl_common.flowic_oif", _INT),
    "FL6_PROTO": ("flowi6.__fl_common.flowic_proto", _INT),
    "FL6_SADDR": ("flowi6.saddr", (16,)),
    "FL6_DADDR": ("flowi6.daddr", (16,)),
    "FL6_SPORT": ("flowi6.uli.ports.sport", (2,)),
    "FL6_DPORT": ("flowi6.uli.ports.dport", (2,)),
    "FIB6_TYPE": ("fib6_result.fib6_type", _INT),
    "FIB6_TB_ID": ("fib6_table.tb6_id", _INT),
}
# Fields the program reads together, with one bpf_probe_read_kernel of the
# bytes that cover them (a helper call per read is most of what the raw hooks
# cost beyond the floor): span name -> its fields. The span starts at the
# first field's offset rounded down to 8 (so a field's alignment in the
# buffer is its alignment in the struct) and may cover at most SPAN_MAX bytes
# (a stack buffer); a kernel whose fields lie further apart gets the
# tracepoint program (FieldsUnavailable).
SPANS = {
    "SK4": ("SK_DADDR", "SK_RCV_SADDR", "SK_DPORT", "SK_NUM", "SK_FAMILY"),
    "SK6": ("SK_V6_DADDR", "SK_V6_RCV_SADDR"),
    "FL4": ("FL4_OIF", "FL4_SADDR", "FL4_DADDR", "FL4_SPORT", "FL4_DPORT"),
    "FL6": ("FL6_OIF", "FL6_SADDR", "FL6_DADDR", "FL6_SPORT", "FL6_DPORT"),
}
SPAN_MAX = 128
# Which fields each hook needs, and the raw tracepoint's arguments as the
# program takes them (ctx->args[i]; the BTF prototype must say the same).
HOOK_FIELDS = {
    "sock:inet_sock_set_state": (
        ("struct sock *", "int", "int"),
        [name for name in FIELDS if name.startswith("SK_")]),
    "fib:fib_table_lookup": (
        ("unsigned int", "struct flowi4 *", None, "int"),
        [name for name in FIELDS if name.startswith("FL4_")]),
    "fib6:fib6_table_lookup": (
        (None, "struct fib6_result *", "struct fib6_table *", "struct flowi6 *"),
        [name for name in FIELDS if name.startswith(("FL6_", "FIB6_"))]),
}


class FieldsUnavailable(RuntimeError):
    """The raw program cannot read this kernel's fields; the message says why."""


@dataclass(frozen=True, slots=True)
class KernelField:
    """One field as the program reads it: ``size`` bytes at ``offset``, then
    (a bitfield) ``bits`` bits from bit ``shift`` of what was read."""

    name: str
    path: str
    offset: int
    size: int
    shift: int = 0
    bits: int = 0

    def cflags(self) -> list[str]:
        """Its -D flags.

        >>> print(*KernelField("SK_NUM", "sock_common.skc_num", 14, 2).cflags())
        -DF_SK_NUM_OFF=14 -DF_SK_NUM_SIZE=2 -DF_SK_NUM_SHIFT=0 -DF_SK_NUM_BITS=0
        """
        return [f"-DF_{self.name}_{key}={value}" for key, value in (
            ("OFF", self.offset), ("SIZE", self.size), ("SHIFT", self.shift),
            ("BITS", self.bits))]

    def describe(self) -> str:
        """One line for --ebpf-dump.

        >>> KernelField("SK_NUM", "sock_common.skc_num", 14, 2).describe()
        'SK_NUM sock_common.skc_num: byte 14, 2 bytes'
        """
        where = f"byte {self.offset}, {self.size} bytes"
        if self.bits:
            where += f", bits {self.shift}..{self.shift + self.bits - 1}"
        return f"{self.name} {self.path}: {where}"


@dataclass(frozen=True, slots=True)
class KernelFields:
    """The fields resolved for this kernel and where they came from."""

    source: str
    fields: dict[str, KernelField]

    def spans(self) -> dict[str, tuple[int, int]]:
        """Span name -> (byte offset, size) covering its fields, for the spans
        whose fields were resolved (SPANS).

        >>> f = KernelFields("test", {
        ...     "SK_DADDR": KernelField("SK_DADDR", "d", 0, 4),
        ...     "SK_RCV_SADDR": KernelField("SK_RCV_SADDR", "s", 4, 4),
        ...     "SK_DPORT": KernelField("SK_DPORT", "p", 12, 2),
        ...     "SK_NUM": KernelField("SK_NUM", "n", 14, 2),
        ...     "SK_FAMILY": KernelField("SK_FAMILY", "f", 16, 2)})
        >>> f.spans()
        {'SK4': (0, 18)}
        """
        out = {}
        for span, names in SPANS.items():
            if not all(name in self.fields for name in names):
                continue
            members = [self.fields[name] for name in names]
            start = min(f.offset for f in members) // 8 * 8
            end = max(f.offset + f.size for f in members)
            out[span] = (start, end - start)
        return out

    def cflags(self) -> list[str]:
        spans = [f"-DS_{span}_{key}={value}"
                 for span, (offset, size) in self.spans().items()
                 for key, value in (("OFF", offset), ("SIZE", size))]
        return ["-DRAW_HOOKS"] + [
            flag for field in self.fields.values() for flag in field.cflags()
        ] + spans

    def shifted(self, name: str, by: int) -> KernelFields:
        """The same fields with ``name`` moved ``by`` bytes (for the self-test's
        own tests: a kernel whose layout moved one field)."""
        moved = replace(self.fields[name], offset=self.fields[name].offset + by)
        return KernelFields(f"{self.source}, {name} shifted by {by}",
                            {**self.fields, name: moved})

    def describe(self) -> str:
        """A comment block for --ebpf-dump: every offset and its source."""
        lines = [f"kernel fields read by the raw hooks, offsets from {self.source}"]
        lines += [f"  {field.describe()}" for field in self.fields.values()]
        lines += [f"  span {span}: bytes {offset}..{offset + size - 1}, read at once"
                  for span, (offset, size) in self.spans().items()]
        return "".join(f" * {line}\n" for line in lines)


def _load_unit(member: btf.Member) -> tuple[int, int, int]:
    """(byte offset, load size, shift) that cover a bitfield member."""
    offset, shift = member.bit_offset // 8, member.bit_offset % 8
    need = (shift + member.bits + 7) // 8
    size = next(s for s in _INT if s >= need)
    return offset, size, shift


def resolve(hooks: list[str], path: Path | str = btf.KERNEL_BTF) -> KernelFields:
    """The fields ``hooks`` need, from the BTF at ``path``.

    Raises FieldsUnavailable naming the file, the field or the argument that
    is missing or not as the program expects.
    """
    try:
        types = btf.load(path)
        fields: dict[str, KernelField] = {}
        for hook in hooks:
            expected, names = HOOK_FIELDS[hook]
            event = hook.partition(":")[2]
            args = types.trace_args(event)
            if len(args) != len(expected) or any(
                    want is not None and got != want
                    for want, got in zip(expected, args, strict=True)):
                raise FieldsUnavailable(
                    f"raw tracepoint {event} takes ({', '.join(args)}), the "
                    f"program expects ({', '.join(w or '*' for w in expected)})")
            for name in names:
                member_path, sizes = FIELDS[name]
                member = types.member(member_path)
                if member.bits:
                    offset, size, shift = _load_unit(member)
                    fields[name] = KernelField(name, member_path, offset, size,
                                               shift, member.bits)
                elif member.size not in sizes:
                    raise FieldsUnavailable(
                        f"{member_path} is {member.size} bytes, the program reads "
                        f"{' or '.join(map(str, sizes))}")
                else:
                    fields[name] = KernelField(name, member_path, member.offset,
                                               member.size)
    except btf.BtfError as exc:
        raise FieldsUnavailable(str(exc)) from None
    resolved = KernelFields(f"BTF {path}", fields)
    for span, (_, size) in resolved.spans().items():
        if size > SPAN_MAX:
            raise FieldsUnavailable(
                f"the fields {', '.join(FIELDS[n][0] for n in SPANS[span])} lie "
                f"across {size} bytes, more than the {SPAN_MAX} the program "
                "reads at once")
    return resolved
