"""Plain records shared by the eBPF tracer and the /proc fallback.

A tracer's ``read()`` returns one :class:`TracerReading`: the flow counters
that grew since the previous read, the listening sockets that exist now, and
how many counts were dropped (full maps and the like) since the previous read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FlowSample", "ListenSample", "TracerReading"]


@dataclass(slots=True)
class FlowSample:
    """One aggregated delta for one (process, direction, endpoint, protocol)."""

    cgroup_id: int  # v2 cgroup id of the process (0 if unknown, e.g. softirq)
    pid: int  # a tgid seen on this key (0 if unknown)
    comm: str
    direction: str  # "out": connected to ip:port; "in": accepted from ip on port
    local_ip: str  # "" if unknown
    ip: str  # remote address (IPv4 dotted or IPv6 text)
    port: int
    proto: str  # "tcp" | "udp"
    counters: dict[str, int] = field(default_factory=dict)  # schema.COUNTERS names


@dataclass(slots=True)
class ListenSample:
    """A listening socket that exists at read time."""

    cgroup_id: int
    pid: int
    comm: str
    ip: str
    port: int
    proto: str


@dataclass(slots=True)
class TracerReading:
    flows: list[FlowSample] = field(default_factory=list)
    listens: list[ListenSample] = field(default_factory=list)
    lost: int = 0  # counts dropped since the previous read; never silent
    # v2 cgroups created since the previous read, id -> path (eBPF only); feed
    # them to CgroupResolver.learn() so short-lived containers stay attributed.
    cgroups: dict[int, str] = field(default_factory=dict)
