"""The collector's settings, read from the ``PORTOLAN_*`` environment in one place.

:func:`settings_from_env` is a pure function of a mapping (``os.environ`` in
production, a dict in tests) that returns a frozen :class:`CollectorSettings`
or raises :class:`SettingsError` naming the variable at fault. The collector
(``python -m collector``) and the web app's settings both read these values
through it, so that a variable means the same thing and fails the same way on
both sides. See the README's settings table for what each one does.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from collector.redis_client import CLUSTER_SCHEMES, parse_cluster_url
from collector.schema import Keys, SchemaError, validate_host_id

__all__ = ["CollectorSettings", "SettingsError", "settings_from_env"]


class SettingsError(ValueError):
    """A malformed environment variable; the message names it."""


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """Everything one collector needs to know about its deployment."""

    host_id: str
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "portolan"
    interval: float = 1.0  # seconds between reports
    # A host's nodes leave the live map this long after its last report; its
    # flow counters expire after FLOW_TTL.
    node_ttl: float = 30.0
    flow_ttl: float = 300.0
    # History: a snapshot every HISTORY_STEP s kept HISTORY_FINE s, and one every
    # HISTORY_COARSE_STEP s kept HISTORY_WINDOW s.
    history_step: float = 5.0
    history_fine: float = 900.0
    history_coarse_step: float = 60.0
    history_window: float = 3600.0
    # UDP and connects failing for want of a route are traced on the kernel's
    # route lookups, which run for every routed packet: off, the tracer costs
    # about a quarter less in the kernel on TCP-heavy hosts (see BENCHMARKS.md).
    trace_udp: bool = True
    # Which eBPF program (PORTOLAN_EBPF_PROGRAM): "auto" loads the raw hooks
    # where the kernel's BTF gives their fields and their self-test passes,
    # else the tracepoint program; "raw" or "tracepoint" insists on one.
    ebpf_program: str = "auto"
    log_level: str = "INFO"


_EBPF_PROGRAMS = ("auto", "raw", "tracepoint")
# Field -> variable for the positive numbers, in the order they are read.
_SECONDS = {
    "interval": "PORTOLAN_INTERVAL",
    "node_ttl": "PORTOLAN_NODE_TTL",
    "flow_ttl": "PORTOLAN_FLOW_TTL",
    "history_step": "PORTOLAN_HISTORY_STEP",
    "history_fine": "PORTOLAN_HISTORY_FINE",
    "history_coarse_step": "PORTOLAN_HISTORY_COARSE_STEP",
    "history_window": "PORTOLAN_HISTORY_WINDOW",
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def settings_from_env(env: Mapping[str, str],
                      hostname: str | None = None) -> CollectorSettings:
    """The collector's settings from ``env``; unset or empty means the default.

    ``hostname`` is the default host id (this machine's name when None).

    >>> s = settings_from_env({"PORTOLAN_INTERVAL": "0.5"}, hostname="web-1")
    >>> s.host_id, s.interval, s.trace_udp
    ('web-1', 0.5, True)
    >>> settings_from_env({"PORTOLAN_NODE_TTL": "soon"}, hostname="web-1")
    Traceback (most recent call last):
    ...
    collector.settings.SettingsError: PORTOLAN_NODE_TTL must be a number, not 'soon'
    """
    defaults = CollectorSettings(host_id="")

    def text(name: str, default: str) -> str:
        return env.get(name) or default

    host_id = text("PORTOLAN_HOST_ID", "") or hostname or socket.gethostname()
    try:
        validate_host_id(host_id)
    except SchemaError as exc:
        raise SettingsError(f"PORTOLAN_HOST_ID: {exc}") from None
    prefix = text("PORTOLAN_KEY_PREFIX", defaults.key_prefix)
    try:
        Keys(prefix)
    except SchemaError as exc:
        raise SettingsError(f"PORTOLAN_KEY_PREFIX: {exc}") from None
    seconds = {
        field: _positive(name, env.get(name), getattr(defaults, field))
        for field, name in _SECONDS.items()
    }
    redis_url = text("REDIS_URL", defaults.redis_url)
    scheme = urlsplit(redis_url).scheme
    if scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
        # Only the scheme is shown: the rest of the URL may hold a password.
        raise SettingsError("REDIS_URL must start with redis://, rediss://, "
                            "unix:// or redis+cluster://, not "
                            f"{scheme + ':' if scheme else 'no scheme'}")
    if scheme in CLUSTER_SCHEMES:
        try:
            parse_cluster_url(redis_url)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    log_level = text("LOG_LEVEL", defaults.log_level).upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(
            f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}")
    ebpf_program = text("PORTOLAN_EBPF_PROGRAM", defaults.ebpf_program).lower()
    if ebpf_program not in _EBPF_PROGRAMS:
        raise SettingsError(f"PORTOLAN_EBPF_PROGRAM must be one of "
                            f"{', '.join(_EBPF_PROGRAMS)}, not {ebpf_program!r}")
    return CollectorSettings(
        host_id=host_id,
        ebpf_program=ebpf_program,
        redis_url=redis_url,
        key_prefix=prefix,
        trace_udp=_bool("PORTOLAN_TRACE_UDP", env.get("PORTOLAN_TRACE_UDP"),
                        defaults.trace_udp),
        log_level=log_level,
        **seconds,
    )


def _positive(name: str, value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {value!r}") from None
    # NaN fails this too: it would make every timer fire never or always.
    if not number > 0 or number == float("inf"):
        raise SettingsError(f"{name} must be positive, not {value!r}")
    return number


def _bool(name: str, value: str | None, default: bool) -> bool:
    if not value:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")

