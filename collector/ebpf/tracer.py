"""Load connections.c and read its in-kernel counters as deltas.

The program is connections.c with its headers beside it (counters.h,
sockets.h, udp_route.h) inlined by collector.ebpf.source, compiled with -D
flags for its sizes, the hooks this kernel has and, before 5.12, the
COMPAT_PRE_5_12 variant. Hooks (tracepoints only, and no syscall tracepoints;
the header of connections.c says why each):

required
    sock:inet_sock_set_state. Without it nothing loads and the collector
    falls back to /proc polling (collector.procfs).
optional, and what is lost without each
    tcp:tcp_receive_reset   refused connects count as timeouts; received
                            resets are not counted.
    tcp:tcp_send_reset      sent resets are not counted.
    tcp:tcp_retransmit_skb  retransmits are not counted.
    sock:sock_send_length,  bytes each way and all UDP counting, so kernels
    sock:sock_recv_length   before 6.3 get connection counts only. Attached
                            as raw tracepoints (support.RAW_HOOKS).
    fib:fib_table_lookup,   UDP peers (IPv4, IPv6), and connects that fail
    fib6:fib6_table_lookup  for want of a route. They run on every routed
                            packet; PORTOLAN_TRACE_UDP=0 leaves them out.
    sched:sched_process_exec  a process that exits before the collector reads
                            /proc is named after its calling thread.
    cgroup:cgroup_mkdir     containers that live less than one cgroup scan
                            interval are not attributed (TracerReading.cgroups
                            stays empty).
Before 6.7 the kernel skips a tracepoint program silently when another BPF
program runs on that CPU: missing_hooks then says lost is a lower bound.

Two programs: where the kernel has BTF, the state-change and route hooks are
raw tracepoints reading kernel struct fields at offsets from that BTF
(raw_hooks.h, collector.ebpf.kernel_fields), checked by a self-test at load
(collector.ebpf.self_test); elsewhere, or when that test fails, the
tracepoint program, which reads only tracepoint arguments. ``program`` says
which was loaded and ``program_note`` why not the raw one.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import logging
import platform
import time
from pathlib import Path

from collector.ebpf import btf, self_test
from collector.ebpf.compiler_memory import release_compiler_memory
from collector.ebpf.kernel_fields import FieldsUnavailable, KernelFields, resolve
from collector.ebpf.prog_info import ProgramMisses
from collector.ebpf.source import inline_includes, standalone
from collector.ebpf.support import (
    OPTIONAL_HOOKS,
    available_hooks,
    ebpf_unavailable_reason,
    kernel_version,
    tracefs_root,
)
from collector.readings import FlowSample, ListenSample, TracerReading
from collector.schema import COUNTERS

__all__ = ["ConnectionTracer", "EbpfUnavailable"]

log = logging.getLogger("portolan.collector.ebpf")

PROGRAM_PATH = Path(__file__).with_name("connections.c")

_PROTOS = {6: "tcp", 17: "udp"}
_DIRECTIONS = {0: "out", 1: "in"}
_ANY = {4: "0.0.0.0", 6: "::"}

# Optional hook groups -> the -D flag that compiles them in.
_FLAG_HOOKS = {
    "HAVE_TCP_RECEIVE_RESET": ("tcp:tcp_receive_reset",),
    "HAVE_TCP_SEND_RESET": ("tcp:tcp_send_reset",),
    "HAVE_TCP_RETRANSMIT_SKB": ("tcp:tcp_retransmit_skb",),
    "HAVE_CGROUP_MKDIR": ("cgroup:cgroup_mkdir",),
    "HAVE_SCHED_PROCESS_EXEC": ("sched:sched_process_exec",),
    "HAVE_SOCK_LENGTH": ("sock:sock_send_length", "sock:sock_recv_length"),
    "HAVE_FIB4": ("fib:fib_table_lookup",),
    "HAVE_FIB6": ("fib6:fib6_table_lookup",),
}
# Run on every routed packet; left out with trace_udp=False (PORTOLAN_TRACE_UDP).
ROUTE_HOOKS = ("fib:fib_table_lookup", "fib6:fib6_table_lookup")


# A tracepoint program the kernel skips (another BPF program is running on
# that CPU) is counted in its recursion_misses, and so in lost, only since 6.7
# (raw tracepoints earlier); before, such a skip is silent, and lost says so.
SKIPS_COUNTED_SINCE = (6, 7)
SKIPS_UNCOUNTED = ("exact counts: this kernel (before 6.7) does not count the "
                   "tracepoint runs it skips while another BPF program runs on "
                   "the same CPU; lost is a lower bound")


class EbpfUnavailable(RuntimeError):
    """The eBPF tracer cannot load on this host; the message says why."""


def format_addr(family: int, raw: bytes) -> str:
    """Render a key address; IPv4-mapped IPv6 becomes dotted IPv4, zero becomes ""."""
    if family == 4:
        data = bytes(raw[:4])
        return "" if data == b"\0\0\0\0" else str(ipaddress.IPv4Address(data))
    data = bytes(raw[:16])
    if data == bytes(16):
        return ""
    addr = ipaddress.IPv6Address(data)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


_RAW_NOTE = ("raw hooks; the collector checks these offsets by a self-test at "
             "start\n * and loads the tracepoint program if it fails")
_TRACEPOINT_NOTE = "tracepoint program (reads tracepoint arguments only)"


def _with_note(program: str, note: str, fields: KernelFields | None) -> str:
    """``program`` with a comment after its cflags line: which program it is,
    and the kernel fields it reads, where they came from."""
    cflags_line, _, rest = program.partition("\n")
    block = f"/*\n * {note}\n" + (fields.describe() if fields else "") + " */\n"
    return f"{cflags_line}\n{block}{rest}"


class _class_or_instance:  # noqa: N801 - used as a decorator
    """Bind a method to the instance when there is one, else to the class."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        return functools.partial(self.func, cls if obj is None else obj)


def _needs_rst_reason_enum() -> bool:
    """tcp_send_reset uses enum sk_rst_reason (6.10+) but the headers lack it."""
    root = tracefs_root()
    fmt = Path(root, "events/tcp/tcp_send_reset/format") if root else None
    if fmt is None or "enum sk_rst_reason" not in fmt.read_text():
        return False
    build = Path("/lib/modules", platform.release(), "build", "include")
    for header in ("net/rstreason.h", "trace/events/tcp.h"):
        path = build / header
        if path.is_file() and "enum sk_rst_reason" in path.read_text(errors="replace"):
            return False
    return True


class ConnectionTracer:
    """In-kernel connection counters, read as deltas since the previous read."""

    mode = "ebpf"

    # Sizes, passed to connections.c as -D flags (see _configure), only here.
    FLOW_MAP_SIZE = 16384
    SOCK_SLOTS = 131072  # TCP socket table; a power of two
    SOCK_MAP_SIZE = 65536  # UDP sockets; TCP sockets too before 5.12
    LISTEN_MAP_SIZE = 4096
    CGROUP_PATH_LEN = 256
    # XXX: delete with kernels before 5.12 (COMPAT_PRE_5_12): how long read()
    # waits for programs still writing to the old buffer.
    DRAIN_TIMEOUT_S = 1.0

    PROGRAMS = ("auto", "raw", "tracepoint")
    # The -D flags of kernel fields that passed the self-test in this process:
    # the same offsets on the same kernel need no second test (and a program
    # with a tiny flow map, as a test loads, could not hold one).
    _fields_checked: set[tuple[str, ...]] = set()

    def __init__(self, flow_map_size: int | None = None, trace_udp: bool = True,
                 compat: bool | None = None, program: str = "auto",
                 btf_path: Path | str | None = None,
                 fields: KernelFields | None = None):
        """``compat`` forces (or forbids) the program for kernels before 5.12;
        by default the running kernel decides. ``program``: "raw" (or
        EbpfUnavailable saying why not), "tracepoint", or "auto": raw where its
        fields resolve from the BTF at ``btf_path`` and pass the self-test,
        else tracepoint (``btf_path`` None: btf.KERNEL_BTF). ``fields``
        replaces what the BTF says (tests)."""
        if program not in self.PROGRAMS:
            raise ValueError(f"program must be one of {self.PROGRAMS}, not {program!r}")
        reason = ebpf_unavailable_reason()
        if reason:
            raise EbpfUnavailable(reason)
        self._bpf = None
        self._carry = None  # the self-test's reading, less its own flows
        self.program, self.program_note, self.fields = "tracepoint", "", None
        if program != "tracepoint":
            try:
                self._load_raw(flow_map_size, trace_udp, compat, btf_path, fields)
            except Exception as exc:  # noqa: BLE001 - any failure: the other program
                self.close()
                if program == "raw":
                    raise EbpfUnavailable(f"raw hooks: {exc}") from exc
                self.program_note = (f"raw hooks not used ({exc}); using the "
                                     "tracepoint program")
                log.warning("ebpf: %s", self.program_note)
        if self._bpf is None:
            self._load(flow_map_size, trace_udp, compat, None)
        release_compiler_memory()  # nothing compiles from here on
        for hook in self.missing_hooks:
            log.warning("ebpf: hook missing, %s", hook)

    def _load(self, flow_map_size, trace_udp, compat, fields) -> None:
        """Compile, load and attach the program (raw hooks with ``fields``)."""
        from bcc import BPF  # imported late: bcc is optional for the collector

        self._text, self._cflags, self.missing_hooks = self._configure(
            flow_map_size, trace_udp, compat, fields)
        self.compat = "-DCOMPAT_PRE_5_12" in self._cflags
        # Not BPF(src_file=...): see collector.ebpf.source.
        self._bpf = BPF(text=self._text.encode(), cflags=self._cflags)
        # Every program was loaded and attached by BPF() (TRACEPOINT_PROBE,
        # RAW_TRACEPOINT_PROBE).
        self._misses = ProgramMisses([f.fd for f in self._bpf.funcs.values()])
        self._active = 0
        self._lost_seen = [0, 0, 0]

    def _load_raw(self, flow_map_size, trace_udp, compat, btf_path, fields) -> None:
        """Load the raw hooks and run their self-test; raise why not."""
        if fields is None:
            fields = self.raw_fields(trace_udp, btf_path)
        self._load(flow_map_size, trace_udp, compat, fields)
        checked = tuple(fields.cflags())
        if checked not in self._fields_checked:
            counts_udp = "-DHAVE_SOCK_LENGTH" in self._cflags
            fib4, fib6 = ("-DHAVE_FIB4" in self._cflags, "-DHAVE_FIB6" in self._cflags)
            self._carry = self_test.run(
                self, udp4=counts_udp and fib4, udp6=counts_udp and fib6,
                route4=fib4, route6=fib6)
            self._fields_checked.add(checked)
        self.program, self.fields = "raw", fields

    @classmethod
    def raw_fields(cls, trace_udp: bool = True,
                   btf_path: Path | str | None = None) -> KernelFields:
        """The kernel fields the raw hooks would read here (FieldsUnavailable
        if the BTF at ``btf_path`` lacks one)."""
        _, cflags, _ = cls._configure(trace_udp=trace_udp)
        hooks = ["sock:inet_sock_set_state"]
        hooks += [hook for flag, hook in (("-DHAVE_FIB4", "fib:fib_table_lookup"),
                                          ("-DHAVE_FIB6", "fib6:fib6_table_lookup"))
                  if flag in cflags]
        return resolve(hooks, btf.KERNEL_BTF if btf_path is None else btf_path)

    @classmethod
    def _configure(
        cls, flow_map_size: int | None = None, trace_udp: bool = True,
        compat: bool | None = None, fields: KernelFields | None = None,
    ) -> tuple[str, list[str], list[str]]:
        """The program text (headers inlined), its -D flags and the
        missing-hook messages here; the raw hooks with ``fields``."""
        hooks = available_hooks()
        off = () if trace_udp else ROUTE_HOOKS
        hooks.update({hook: False for hook in off})
        missing = [
            f"{hook}: {'off (PORTOLAN_TRACE_UDP=0): ' if hook in off else ''}{lost}"
            for hook, lost in OPTIONAL_HOOKS.items()
            if not hooks.get(hook, False)
        ]
        sizes = {
            "FLOW_MAP_SIZE": int(flow_map_size or cls.FLOW_MAP_SIZE),
            "SOCK_SLOTS": int(cls.SOCK_SLOTS),
            "SOCK_MAP_SIZE": int(cls.SOCK_MAP_SIZE),
            "LISTEN_MAP_SIZE": int(cls.LISTEN_MAP_SIZE),
            "CGROUP_PATH_LEN": int(cls.CGROUP_PATH_LEN),
        }
        cflags = [f"-D{name}={value}" for name, value in sizes.items()]
        cflags += [
            f"-D{flag}"
            for flag, needed in _FLAG_HOOKS.items()
            if all(hooks.get(h, False) for h in needed)
        ]
        if "-DHAVE_TCP_SEND_RESET" in cflags and _needs_rst_reason_enum():
            cflags.append("-DNEED_SK_RST_REASON")
        kernel = kernel_version()
        if compat is None:
            compat = kernel < (5, 12)
        if compat:
            # XXX: delete with kernels before 5.12 (no compare-and-swap in BPF),
            # with every COMPAT_PRE_5_12 block of connections.c and its headers.
            cflags.append("-DCOMPAT_PRE_5_12")
        if kernel < SKIPS_COUNTED_SINCE:
            missing.append(SKIPS_UNCOUNTED)
        if "-DHAVE_SOCK_LENGTH" not in cflags:
            # UDP is counted on sock_*_length: without it, the route hooks
            # give connect failures only.
            message = "UDP: no datagrams are counted without sock:sock_*_length"
            missing.append(message)
        if fields is not None:
            cflags += fields.cflags()
        return inline_includes(PROGRAM_PATH), cflags, missing

    @classmethod
    def render_program(cls, flow_map_size: int | None = None,
                       trace_udp: bool = True, program: str = "auto",
                       btf_path: Path | str | None = None) -> str:
        """The final C for this kernel without loading it (``collect --ebpf-dump``):
        one text, its -D flags as #define lines on top, that compiles alone.

        "auto" renders the raw hooks where their fields resolve (the self-test
        runs only when the collector loads them); a comment on top says which
        program it is, and the offsets and where they came from."""
        fields, note = None, _TRACEPOINT_NOTE
        if program != "tracepoint":
            try:
                fields = cls.raw_fields(trace_udp, btf_path)
                note = _RAW_NOTE
            except FieldsUnavailable as exc:
                if program == "raw":
                    raise
                note = f"{_TRACEPOINT_NOTE}: raw hooks not used ({exc})"
        text, cflags, _ = cls._configure(flow_map_size, trace_udp, fields=fields)
        return _with_note(standalone(text, cflags), note, fields)

    @_class_or_instance
    def program_text(self_or_cls) -> str:
        """The final C with its -D flags as #define lines on top: as loaded, or
        as it would load here.

        ``ConnectionTracer.program_text()`` renders without loading anything
        (``collect --ebpf-dump``); ``tracer.program_text()`` is what was loaded.
        """
        if isinstance(self_or_cls, type):
            return self_or_cls.render_program()
        fields = self_or_cls.fields
        note = (_RAW_NOTE if fields else _TRACEPOINT_NOTE
                + (f": {self_or_cls.program_note}" if self_or_cls.program_note
                   else ""))
        return _with_note(standalone(self_or_cls._text, self_or_cls._cflags), note,
                          fields)

    # ------------------------------------------------------------- reading

    def _flip(self) -> int:
        """Make the other flow map active; return the index of the old one."""
        old = self._active
        new = 1 - old
        control = self._bpf[b"control"]
        control[ctypes.c_int(0)] = ctypes.c_uint32(new)
        self._active = new
        # Every program that read the old selector has finished writing once
        # this returns (see counters.h).
        if self.compat:  # XXX: delete with kernels before 5.12
            self._drain_inflight(old)
        else:
            # A map-of-maps update returns after an RCU grace period.
            self._bpf[b"rcu_sync"][ctypes.c_int(0)] = ctypes.c_int(
                self._bpf[b"rcu_sync_inner"].get_fd())
        return old

    def _drain_inflight(self, old: int) -> None:
        """Wait until no program announces itself in buffer ``old``.

        XXX: delete with kernels before 5.12 (COMPAT_PRE_5_12)."""
        inflight = self._bpf[b"inflight"]
        deadline = time.monotonic() + self.DRAIN_TIMEOUT_S
        while (writers := sum(int(v) for v in inflight[ctypes.c_int(old)])) != 0:
            if time.monotonic() > deadline:
                log.warning("ebpf: %d programs still writing after drain", writers)
                return
            time.sleep(0.001)

    def read(self) -> TracerReading:
        """Counters grown since the previous read, current listens, lost counts."""
        old = self._flip()
        table = self._bpf[b"flows_b" if old else b"flows_a"]
        flows = []
        entries = list(table.items())
        for key, val in entries:
            counters = {name: int(getattr(val, name)) for name in COUNTERS}
            flows.append(
                FlowSample(
                    cgroup_id=int(key.cgroup_id),
                    pid=int(val.last_tgid or key.tgid),
                    comm=bytes(val.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
                    direction=_DIRECTIONS.get(key.direction, "out"),
                    local_ip=format_addr(key.family, key.laddr),
                    ip=format_addr(key.family, key.addr),
                    port=int(key.port),
                    proto=_PROTOS.get(key.proto, "tcp"),
                    counters=counters,
                )
            )
        # Nothing writes to the old map until the next flip: clearing is safe.
        for key, _ in entries:
            try:
                del table[key]
            except KeyError:
                pass
        listens = [
            ListenSample(
                cgroup_id=int(v.cgroup_id),
                pid=int(v.tgid),
                comm=bytes(v.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
                ip=format_addr(v.family, v.addr) or _ANY[v.family],
                port=int(v.port),
                proto="tcp",
            )
            for v in self._bpf[b"listens"].values()
        ]
        self._name_by_exec(flows + listens)
        lost = self._lost_delta() + self._misses.delta()
        cgroups = self._drain_cgroups()
        if self._carry is not None:
            # What the self-test's read found besides its own traffic.
            flows = self._carry.flows + flows
            lost += self._carry.lost
            cgroups = {**self._carry.cgroups, **cgroups}
            self._carry = None
        return TracerReading(flows=flows, listens=listens, lost=lost, cgroups=cgroups)

    def _name_by_exec(self, samples) -> None:
        """Name each sample's process as it was executed, where the kernel saw
        the exec: the kernel's comm is the calling thread's (ProcessNames
        reads /proc first; this is for a process gone by then)."""
        if "-DHAVE_SCHED_PROCESS_EXEC" not in self._cflags:
            return
        table = self._bpf[b"exec_names"]
        names: dict[int, str | None] = {}
        for sample in samples:
            if not sample.pid:
                continue
            if sample.pid not in names:
                try:
                    raw = table[table.Key(sample.pid)].comm
                    names[sample.pid] = bytes(raw).split(b"\0", 1)[0].decode(
                        "utf-8", "replace")
                except KeyError:
                    names[sample.pid] = None
            if names[sample.pid]:
                sample.comm = names[sample.pid]

    def _drain_cgroups(self) -> dict[int, str]:
        """v2 cgroups created since the previous read: id -> path."""
        if "-DHAVE_CGROUP_MKDIR" not in self._cflags:
            return {}
        table = self._bpf[b"cgroup_paths"]
        found = {}
        for key, val in list(table.items()):
            found[int(key.value)] = (
                bytes(val.path).split(b"\0", 1)[0].decode("utf-8", "replace")
            )
            try:
                del table[key]
            except KeyError:
                pass
        return found

    def _lost_delta(self) -> int:
        """Counts lost to full maps and buckets since the previous read. Runs
        the kernel skipped are added by read() (see collector.ebpf.prog_info)."""
        lost = self._bpf[b"lost"]
        now = [int(lost[ctypes.c_int(i)].value) for i in range(len(self._lost_seen))]
        delta = sum(now) - sum(self._lost_seen)
        self._lost_seen = now
        return delta

    def close(self) -> None:
        """Detach every program and free the maps."""
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> ConnectionTracer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
