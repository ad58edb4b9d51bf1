"""This host's own IP addresses, read from /proc (no netlink library needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def parse_fib_trie(text: str) -> list[str]:
    """Local IPv4 addresses from ``/proc/net/fib_trie`` ("/32 host LOCAL" leaves).

    >>> parse_fib_trie("  |-- 10.0.0.5\\n     /32 host LOCAL\\n  |-- 10.0.0.0\\n"
    ...                "     /24 link UNICAST\\n")
    ['10.0.0.5']
    """
    found, last = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.endswith("host LOCAL") and last and last not in found:
            found.append(last)
    return found


def parse_if_inet6(text: str) -> list[str]:
    """IPv6 addresses from ``/proc/net/if_inet6`` (32 hex digits per line).

    >>> parse_if_inet6("fe800000000000000000000000000001 02 40 20 80 eth0\\n")
    ['fe80::1']
    """
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 32:
            out.append(str(ipaddress.IPv6Address(bytes.fromhex(parts[0]))))
    return out


def host_addresses(proc: Path = Path("/proc")) -> list[str]:
    """Addresses of this host's network namespace that can name it: not
    loopback and not link-local (fe80:: is the same on every host)."""
    addrs = []
    for name, parse in (("net/fib_trie", parse_fib_trie), ("net/if_inet6",
                                                            parse_if_inet6)):
        try:
            addrs += parse((proc / name).read_text())
        except OSError:
            continue
    return [
        a for a in addrs
        if not (ipaddress.ip_address(a).is_loopback
                or ipaddress.ip_address(a).is_link_local)
    ]
