"""Production settings: the base settings behind a TLS-terminating proxy.

Use with ``DJANGO_SETTINGS_MODULE=webapp.settings_prod`` (the images do).
Everything in ``webapp.settings`` applies; this module only hardens it, so
that ``manage.py check --deploy`` has nothing to say:

- ``SECRET_KEY`` must come from the environment (no key generated into var/:
  every replica must sign alike) and be strong; ``DEBUG`` cannot be on.
- The proxy says the request came over https with ``X-Forwarded-Proto:
  https`` (``SECURE_PROXY_SSL_HEADER``; it must set or strip that header).
- Cookies are sent over https only; HSTS and the https redirect are on,
  each switchable by its variable. ``/healthz`` and ``/metrics`` are not
  redirected: container health checks and in-cluster scrapes talk plain HTTP
  to the app itself.

Every value is read from the environment with a safe default; a bad one
stops the start with an ImproperlyConfigured naming its variable.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from webapp.env import env_bool, env_count

__all__ = ["proxy_ssl_header", "required_secret_key"]

# Django's own bar for a key (security.W009).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE = 5


def required_secret_key(environ) -> str:
    """SECRET_KEY from the environment, else a clear error; checked before
    the base settings load, which would otherwise make one in var/.

    >>> required_secret_key({"SECRET_KEY": "k" * 40 + "abcdefghij"})[:3]
    'kkk'
    """
    key = environ.get("SECRET_KEY", "")
    hint = ("e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
    if not key:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be set with the production settings ({hint})")
    if (len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE
            or key.startswith("django-insecure-")):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak: use at least {SECRET_KEY_MIN_LENGTH} random "
            f"characters ({hint})")
    return key


def proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER`` from ``Header`` or ``Header=value`` (the
    value defaults to ``https``); empty: no proxy, None.

    >>> proxy_ssl_header("X-Forwarded-Proto")
    ('HTTP_X_FORWARDED_PROTO', 'https')
    >>> proxy_ssl_header("X-Scheme=HTTPS")
    ('HTTP_X_SCHEME', 'HTTPS')
    """
    value = value.strip()
    if not value:
        return None
    header, _, expected = value.partition("=")
    header = header.strip()
    if not header or not all(c.isalnum() or c == "-" for c in header):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be a header name such as "
            f"X-Forwarded-Proto, optionally =value, not {value!r}")
    return "HTTP_" + header.upper().replace("-", "_"), expected.strip() or "https"


_SECRET_KEY = required_secret_key(os.environ)

from webapp.settings import *  # noqa: E402, F403

SECRET_KEY = _SECRET_KEY
if DEBUG:  # noqa: F405 - from the base settings
    raise ImproperlyConfigured(
        "DEBUG must be off with the production settings (unset it or set false)")

SECURE_PROXY_SSL_HEADER = proxy_ssl_header(
    os.environ.get("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"))
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Django matches these against the path without its leading slash.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# A year of HSTS once the site is known to work over https; 0 switches it off
# (and check --deploy then says so).
SECURE_HSTS_SECONDS = env_count("SECURE_HSTS_SECONDS", 31_536_000,
                                unit="seconds", zero="0 (off)")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Preloading is a promise to the browsers' lists, made by submitting the
# domain there; the header alone is no use, so it is off by default and
# Django's reminder of it (W021) is silenced.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
