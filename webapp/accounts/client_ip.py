"""The client's address for login throttling: the socket's peer, or, behind a
proxy, the one header that proxy is configured to set (nothing else a client
could write itself)."""

from __future__ import annotations

import ipaddress

from django.conf import settings

__all__ = ["client_ip", "header_meta_key", "trusted_address"]


def header_meta_key(header: str) -> str:
    """The ``request.META`` key of an HTTP header name.

    >>> header_meta_key("X-Forwarded-For")
    'HTTP_X_FORWARDED_FOR'
    """
    return "HTTP_" + header.strip().upper().replace("-", "_")


def trusted_address(value: str | None) -> str | None:
    """The address the proxy put last in ``value`` (X-Forwarded-For grows to
    the right: entries before the proxy's own are the client's to write);
    None when it is missing or not an address.

    >>> trusted_address("6.6.6.6, 192.0.2.7")
    '192.0.2.7'
    >>> trusted_address("2001:db8::1")
    '2001:db8::1'
    >>> trusted_address("<script>") is None
    True
    """
    if not value:
        return None
    last = value.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: PORTOLAN_CLIENT_IP_HEADER's address if set
    and present, else the peer address."""
    header = getattr(settings, "PORTOLAN_CLIENT_IP_HEADER", "")
    if header:
        address = trusted_address(request.META.get(header_meta_key(header)))
        if address:
            return address
    return request.META.get("REMOTE_ADDR")
