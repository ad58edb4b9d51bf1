"""Deploy-time values parsed from the environment, one parser per kind.

Shared by webapp/settings.py, webapp/settings_prod.py and webapp/metrics/config.py
so that every variable fails the same way: an ImproperlyConfigured that names it.
Each parser takes the environment as an argument (``os.environ`` by default) so
that it is testable without Django loading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

__all__ = ["database_from_url", "env_bool", "env_count", "env_float"]

DATABASE_URL_FORMS = ("postgres://user:password@host:5432/name or "
                      "sqlite:////absolute/path.sqlite3")


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


def database_from_url(url: str, name: str = "DATABASE_URL") -> dict:
    """Django's ``DATABASES`` entry for ``url``: PostgreSQL (``postgres://`` or
    ``postgresql://``; the query string is libpq's options, e.g.
    ``?sslmode=require``) or SQLite (``sqlite:////absolute/path``).

    The error names ``name`` and never repeats the URL: it holds a password.

    >>> db = database_from_url("postgres://web:s%40cret@db.internal:5433/portolan")
    >>> db["ENGINE"], db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]
    ('django.db.backends.postgresql', 'db.internal', '5433', 'portolan', 'web', 's@cret')
    >>> database_from_url("postgresql://db/portolan?sslmode=require")["OPTIONS"]
    {'sslmode': 'require'}
    >>> database_from_url("sqlite:////var/lib/portolan/db.sqlite3")["NAME"]
    '/var/lib/portolan/db.sqlite3'
    >>> database_from_url("mysql://root@db/portolan")
    Traceback (most recent call last):
    ...
    django.core.exceptions.ImproperlyConfigured: DATABASE_URL must be postgres://user:password@host:5432/name or sqlite:////absolute/path.sqlite3, not a mysql:// URL
    """  # noqa: E501 - a doctest's output is one line
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:  # a bad port or a broken [IPv6] host
        raise ImproperlyConfigured(f"{name} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:// + an empty host + /absolute/path: the path's first slash
        # ends the (empty) host.
        path = unquote(parts.path.removeprefix("/"))
        if parts.netloc or parts.query or not path.startswith("/") or path == "/":
            raise ImproperlyConfigured(
                f"{name} must name an absolute SQLite file, "
                "sqlite:////absolute/path.sqlite3 (four slashes), and no options")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    if scheme not in ("postgres", "postgresql"):
        # Only a scheme that came before "//": the start of "user:pw@host"
        # without one would read as a scheme too.
        given = url.strip().lower().startswith(f"{scheme}://") and scheme
        shown = f"a {scheme}:// URL" if given else "a URL without a scheme"
        raise ImproperlyConfigured(f"{name} must be {DATABASE_URL_FORMS}, not {shown}")
    database = unquote(parts.path.removeprefix("/"))
    if not database or "/" in database:
        raise ImproperlyConfigured(
            f"{name} must end with the database's name, as in {DATABASE_URL_FORMS}")
    # Not .hostname, which lowercases: a %2F-quoted host is a socket directory.
    host_port = parts.netloc.rpartition("@")[2]
    host = parts.hostname if host_port.startswith("[") else host_port.partition(":")[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(host),
        "PORT": "" if port is None else str(port),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
