"""DATABASE_URL -> Django's DATABASES entry (webapp.env.database_from_url)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.env import database_from_url

PG = "django.db.backends.postgresql"


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://portolan:pw@db.internal:5432/portolan",
     {"HOST": "db.internal", "PORT": "5432", "NAME": "portolan",
      "USER": "portolan", "PASSWORD": "pw", "OPTIONS": {}}),
    # no password: libpq's PGPASSWORD or ~/.pgpass gives it
    ("postgresql://web@db/portolan",
     {"HOST": "db", "PORT": "", "USER": "web", "PASSWORD": ""}),
    # quoted characters in the user, password and database name
    ("postgres://w%40b:p%3Aw%2Fd%23@db:6543/port%20olan",
     {"USER": "w@b", "PASSWORD": "p:w/d#", "NAME": "port olan", "PORT": "6543"}),
    ("postgres://u:p@[::1]:5432/portolan", {"HOST": "::1", "PORT": "5432"}),
    # a Unix socket directory as the host, its case kept
    ("postgres://%2Fvar%2Frun%2FPostgres/portolan",
     {"HOST": "/var/run/Postgres", "USER": ""}),
    ("postgres://db/portolan?sslmode=verify-full&connect_timeout=5",
     {"OPTIONS": {"sslmode": "verify-full", "connect_timeout": "5"}}),
    ("  POSTGRES://db/portolan  ", {"ENGINE": PG, "HOST": "db"}),
])
def test_postgres_urls(url, expected):
    db = database_from_url(url)
    assert db["ENGINE"] == PG
    assert {k: db[k] for k in expected} == expected


def test_sqlite_url_names_an_absolute_file():
    assert database_from_url("sqlite:////srv/portolan/db.sqlite3") == {
        "ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/portolan/db.sqlite3"}


@pytest.mark.parametrize(("url", "words"), [
    ("mysql://root:hunter2-secret@db/portolan", "not a mysql:// URL"),
    ("db.internal:5432/portolan", "not a URL without a scheme"),
    ("hunter2-secret", "not a URL without a scheme"),
    ("u:hunter2-secret@db/portolan", "not a URL without a scheme"),
    ("postgres://u:hunter2-secret@db:port/portolan", "not a valid URL"),
    ("postgres://u:hunter2-secret@db:99999/portolan", "not a valid URL"),
    ("postgres://u:hunter2-secret@db:5432/", "end with the database's name"),
    ("postgres://u:hunter2-secret@db:5432", "end with the database's name"),
    ("postgres://u:hunter2-secret@db/a/b", "end with the database's name"),
    ("sqlite:///relative.sqlite3", "absolute SQLite file"),
    ("sqlite:////", "absolute SQLite file"),
    ("sqlite://host/db.sqlite3", "absolute SQLite file"),
    ("sqlite:////db.sqlite3?timeout=5", "no options"),
])
def test_a_bad_url_names_the_variable_and_never_the_password(url, words):
    with pytest.raises(ImproperlyConfigured) as caught:
        database_from_url(url, "PORTOLAN_DB")
    message = str(caught.value)
    assert message.startswith("PORTOLAN_DB ")
    assert words in message
    assert "hunter2" not in message
