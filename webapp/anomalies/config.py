"""Thresholds and timings of the analysis, with defaults settings can change.

Sources, later ones winning: the defaults below, the Django setting
``PORTOLAN_ANOMALY`` (a dict of the same names), environment variables
``PORTOLAN_ANOMALY_<NAME>`` (e.g. ``PORTOLAN_ANOMALY_RAISE_AFTER=3``), and
explicit overrides (tests). The webhook URL is ``PORTOLAN_WEBHOOK_URL`` (setting
or environment). A bad value fails fast with a ConfigError naming the setting.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from webapp.anomalies import ConfigError

__all__ = ["Config", "load_config"]

ENV_PREFIX = "PORTOLAN_ANOMALY_"
WEBHOOK_ENV = "PORTOLAN_WEBHOOK_URL"


@dataclass(frozen=True, slots=True)
class Config:
    """Every tunable of the analysis; times in seconds."""

    interval: float = 1.0  # between analysis steps
    # Hysteresis: a soft signal is raised after this many consecutive
    # evaluations, and any anomaly clears after ``clear_after`` clean ones.
    raise_after: int = 2
    clear_after: int = 5
    # Adaptive baselines: EWMA half-life, and how long / how many samples a new
    # container or edge is only learned from, never flagged.
    baseline_halflife: float = 120.0
    warmup_seconds: float = 120.0
    warmup_samples: int = 10
    baseline_relearn: float = 600.0  # outliers lasting this long become normal
    # Container facts.
    restart_count: int = 3  # restarts within restart_window make a loop
    restart_window: float = 300.0
    oom_hold: float = 300.0  # an OOM kill keeps its container red this long
    memory_ratio: float = 0.9  # working set / limit
    cpu_throttled_ratio: float = 0.25  # throttled periods / periods
    # Connections: failures and resets are judged over a sliding window so that
    # clients that connect every few seconds are not alternately red and green.
    failure_window: float = 10.0
    edge_failure_ratio: float = 0.05  # failed / attempts for a warning
    reset_min_count: int = 5
    reset_factor: float = 3.0  # resets/s above this many times the baseline
    traffic_active_fraction: float = 0.9  # share of intervals that had traffic
    traffic_stopped_seconds: float = 5.0
    slow_connect_factor: float = 3.0
    slow_connect_min_us: float = 5000.0
    # Sudden rises of rates over their baseline.
    spike_factor: float = 3.0
    spike_zscore: float = 4.0
    spike_min_cpu_cores: float = 0.5
    spike_min_connections_per_s: float = 5.0
    spike_min_bytes_per_s: float = 1_000_000.0
    # Hosts.
    host_memory_available_ratio: float = 0.10
    host_memory_critical_ratio: float = 0.05
    host_load_per_cpu: float = 2.0
    host_disk_ratio: float = 0.90
    host_disk_critical_ratio: float = 0.97
    # Output.
    status_ttl: float = 30.0
    events_maxlen: int = 10_000
    lock_ttl: float = 10.0
    top_causes: int = 5
    forget_after: float = 900.0  # memory of targets not seen for this long
    webhook_url: str = ""
    webhook_timeout: float = 5.0
    webhook_retries: int = 5
    webhook_backoff: float = 0.5

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "webhook_url":
                _check_url(value)
            elif f.name == "webhook_retries":
                if value < 0:
                    raise ConfigError(f"{_setting(f.name)} must be >= 0, not {value}")
            elif value <= 0:
                raise ConfigError(f"{_setting(f.name)} must be positive, not {value}")
            elif f.name.endswith(("_ratio", "_fraction")) and value > 1:
                raise ConfigError(f"{_setting(f.name)} must be at most 1, not {value}")


def _setting(name: str) -> str:
    if name == "webhook_url":
        return WEBHOOK_ENV
    return f"PORTOLAN_ANOMALY['{name}'] ({ENV_PREFIX}{name.upper()})"


def _check_url(url: str) -> None:
    if url and (urlsplit(url).scheme not in ("http", "https")
                or not urlsplit(url).netloc):
        raise ConfigError(f"{WEBHOOK_ENV} must be an http(s) URL, not {url!r}")


def _coerce(name: str, value, source: str):
    field_type = {f.name: f.type for f in dataclasses.fields(Config)}.get(name)
    if field_type is None:
        raise ConfigError(f"{source}: unknown anomaly setting {name!r}")
    try:
        if field_type == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if field_type == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source} must be a {field_type}, not {value!r}"
        ) from None


def _django_settings() -> tuple[Mapping, str]:
    try:
        from django.conf import settings

        if not settings.configured:
            return {}, ""
        return (getattr(settings, "PORTOLAN_ANOMALY", None) or {},
                getattr(settings, "PORTOLAN_WEBHOOK_URL", "") or "")
    except ImportError:
        return {}, ""


def load_config(
    overrides: Mapping | None = None, environ: Mapping[str, str] | None = None,
    use_django: bool = True,
) -> Config:
    """The analysis configuration from settings, environment and ``overrides``.

    >>> load_config({"raise_after": 3}, environ={}, use_django=False).raise_after
    3
    """
    environ = os.environ if environ is None else environ
    values: dict = {}
    conf, webhook = _django_settings() if use_django else ({}, "")
    if not isinstance(conf, Mapping):
        raise ConfigError("PORTOLAN_ANOMALY must be a dict")
    if webhook:
        values["webhook_url"] = str(webhook)
    for name, value in conf.items():
        values[name] = _coerce(name, value, f"PORTOLAN_ANOMALY[{name!r}]")
    for env_name, value in environ.items():
        if env_name.startswith(ENV_PREFIX) and value != "":
            name = env_name[len(ENV_PREFIX):].lower()
            values[name] = _coerce(name, value, env_name)
    if environ.get(WEBHOOK_ENV):
        values["webhook_url"] = environ[WEBHOOK_ENV]
    for name, value in (overrides or {}).items():
        values[name] = _coerce(name, value, f"override {name!r}")
    return Config(**values)
