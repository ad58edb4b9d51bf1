"""The /metrics settings, read from the environment and checked at start.

Kept apart from webapp/settings.py so that the parsing is testable without
Django loading: settings.py calls ``metrics_settings(os.environ)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

from webapp.env import env_count

__all__ = ["MIN_TOKEN_LENGTH", "metrics_settings"]

# A token a scraper sends in the clear inside TLS: long enough not to guess.
MIN_TOKEN_LENGTH = 16


def metrics_settings(environ: Mapping[str, str]) -> dict:
    """TOKEN ("" switches /metrics off), MAX_EDGES and MAX_CONTAINERS.

    >>> metrics_settings({"PORTOLAN_METRICS_MAX_EDGES": "50"})["MAX_EDGES"]
    50
    >>> metrics_settings({})["TOKEN"]
    ''
    """
    token = environ.get("PORTOLAN_METRICS_TOKEN", "").strip()
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ImproperlyConfigured(
            f"PORTOLAN_METRICS_TOKEN must be at least {MIN_TOKEN_LENGTH} "
            "characters (e.g. python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')")
    if token and not (token.isascii() and token.isprintable() and " " not in token):
        raise ImproperlyConfigured(
            "PORTOLAN_METRICS_TOKEN must be printable ASCII without spaces "
            "(it travels in an HTTP header)")
    return {
        "TOKEN": token,
        "MAX_EDGES": env_count("PORTOLAN_METRICS_MAX_EDGES", 2000, environ),
        "MAX_CONTAINERS": env_count("PORTOLAN_METRICS_MAX_CONTAINERS", 2000, environ),
    }
