"""Per-interface network counters of a container, from its network namespace.

``/proc/<pid>/net/dev`` shows the interfaces of the namespace *that process*
is in, so reading it through a container's init pid gives the container's
view without entering the namespace (no setns, no privileges beyond reading
/proc). Containers that share a namespace (a Kubernetes pod, ``--network
container:x``) report the same counters; ``--network host`` reports the host's.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

__all__ = [
    "InterfaceStats",
    "parse_net_dev",
    "read_net_dev",
    "total",
]


@dataclass(frozen=True, slots=True)
class InterfaceStats:
    """Cumulative counters of one interface (as seen inside the namespace)."""

    name: str
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_drops: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_drops: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def parse_net_dev(text: str) -> dict[str, InterfaceStats]:
    """Parse the text of /proc/net/dev: interface name -> counters.

    Columns (after ``name:``) are 8 receive then 8 transmit fields: bytes,
    packets, errs, drop, fifo, frame/colls, compressed, multicast/carrier.

    >>> t = ("Inter-|Receive\\n face |bytes\\n"
    ...      "  eth0: 100 2 0 0 0 0 0 0 300 4 0 1 0 0 0 0\\n")
    >>> parse_net_dev(t)["eth0"].tx_drops
    1
    """
    result: dict[str, InterfaceStats] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        fields = rest.split()
        if len(fields) < 16:
            continue
        try:
            v = [int(f) for f in fields[:16]]
        except ValueError:
            continue
        name = name.strip()
        result[name] = InterfaceStats(
            name=name,
            rx_bytes=v[0],
            rx_packets=v[1],
            rx_errors=v[2],
            rx_drops=v[3],
            tx_bytes=v[8],
            tx_packets=v[9],
            tx_errors=v[10],
            tx_drops=v[11],
        )
    return result


def total(interfaces: dict[str, InterfaceStats], name: str = "total") -> InterfaceStats:
    """The sum of several interfaces' counters, under ``name``.

    >>> total({"a": InterfaceStats("a", rx_bytes=1),
    ...        "b": InterfaceStats("b", rx_bytes=2)}).rx_bytes
    3
    """
    sums = dict.fromkeys(
        (
            "rx_bytes",
            "rx_packets",
            "rx_errors",
            "rx_drops",
            "tx_bytes",
            "tx_packets",
            "tx_errors",
            "tx_drops",
        ),
        0,
    )
    for stats in interfaces.values():
        for key in sums:
            sums[key] += getattr(stats, key)
    return InterfaceStats(name=name, **sums)


def read_net_dev(
    pid: int, proc: str | os.PathLike = "/proc", include_loopback: bool = False
) -> dict[str, InterfaceStats] | None:
    """Interfaces of the network namespace ``pid`` is in, or None if it is gone."""
    try:
        fd = os.open(f"{os.fspath(proc)}/{int(pid)}/net/dev", os.O_RDONLY)
    except (OSError, ValueError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    interfaces = parse_net_dev(b"".join(chunks).decode("ascii", "replace"))
    if not include_loopback:
        interfaces.pop("lo", None)
    return interfaces
