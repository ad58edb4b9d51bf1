"""Anomalies: rules, baselines, hysteresis, likely causes, events and webhooks.

Everything here reads the container-level topology graph and writes its
findings under its own Redis keys (see ``webapp.anomalies.keys``); the
topology layer merges them onto the map with ``merge.apply_analysis``.
"""


class AnomalyError(Exception):
    """Base of this package's errors."""


class ConfigError(AnomalyError, ValueError):
    """A bad anomaly setting; the message names it."""
