"""Deploy-time values parsed from the environment, one parser per kind.

Shared by webapp/settings.py, webapp/settings_prod.py and webapp/metrics/config.py
so that every variable fails the same way: an ImproperlyConfigured that names it.
Each parser takes the environment as an argument (``os.environ`` by default) so
that it is testable without Django loading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

__all__ = ["env_bool", "env_count", "env_float"]


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """``name`` as true/false (1/0, yes/no, on/off); unset or empty: ``default``.

    >>> env_bool("TLS", False, {"TLS": "on"})
    True
    """
    value = environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_float(name: str, default: float,
              environ: Mapping[str, str] = os.environ) -> float:
    """``name`` as a number; unset or empty: ``default``.

    >>> env_float("TTL", 10.0, {"TTL": "2.5"})
    2.5
    """
    value = environ.get(name, "")
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_count(name: str, default: int, environ: Mapping[str, str] = os.environ, *,
              unit: str = "", zero: str = "0") -> int:
    """``name`` as a whole number, 0 or more; unset or blank: ``default``.

    ``unit`` ("seconds") and ``zero`` ("0 (off)") only word the error.

    >>> env_count("MAX_EDGES", 2000, {"MAX_EDGES": " 50 "})
    50
    >>> env_count("MAX_EDGES", 2000, {})
    2000
    """
    text = environ.get(name, "").strip()
    if not text:
        return default
    whole = f"a whole number of {unit}" if unit else "a whole number"
    try:
        value = int(text)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {whole}, not {text!r}") from None
    if value < 0:
        raise ImproperlyConfigured(f"{name} must be {zero} or more, not {value}")
    return value
