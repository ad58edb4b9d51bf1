"""The production settings behind a TLS proxy: check --deploy is clean with
the environment the images use, bad values stop the start naming their
variable, and a real Daphne behaves as a site behind a TLS proxy should."""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.processes import LoggedProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def image_env(tmp_path, redis_server):
    """What the web image runs with (docker-compose.yml and its .env)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "webapp.settings_prod",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "portolan.example.com,localhost,127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://portolan.example.com",
        "REDIS_URL": redis_server.url,
        "PORTOLAN_VAR_DIR": str(tmp_path / "var"),
        "PORTOLAN_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "PORTOLAN_METRICS_TOKEN": secrets.token_urlsafe(24),
    }


def check_deploy(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_reports_no_issue_with_the_images_environment(image_env):
    result = check_deploy(image_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # The key came from the environment: none was generated into var/.
    assert not (Path(image_env["PORTOLAN_VAR_DIR"]) / "secret_key").exists()


@pytest.mark.parametrize("change, named", [
    ({"SECRET_KEY": None}, "SECRET_KEY must be set"),
    ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY is too weak"),
    ({"SECRET_KEY": "short-key"}, "SECRET_KEY is too weak"),
    ({"DEBUG": "true"}, "DEBUG must be off"),
    ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
    ({"SECURE_SSL_REDIRECT": "maybe"}, "SECURE_SSL_REDIRECT"),
    ({"SECURE_PROXY_SSL_HEADER": "X Forwarded: Proto"}, "SECURE_PROXY_SSL_HEADER"),
    ({"DATABASE_URL": "mysql://root:pw@db/portolan"}, "DATABASE_URL must be"),
])
def test_a_bad_value_stops_the_start_naming_its_variable(image_env, change, named):
    env = dict(image_env)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    result = check_deploy(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


@pytest.mark.parametrize("change, warning", [
    ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
    ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
    ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"}, "security.W005"),
])
def test_switching_a_protection_off_is_what_check_deploy_then_reports(
    image_env, change, warning
):
    result = check_deploy({**image_env, **change})
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


@pytest.fixture
def prod_daphne(image_env):
    port = free_port()
    with LoggedProcess("test_settings_prod-daphne", [
            Path(sys.executable).parent / "daphne", "-b", "127.0.0.1", "-p", port,
            "webapp.asgi:application"], cwd=ROOT, env=image_env) as proc:
        up = wait_for(lambda: get(port, "/healthz")[0] == 200 or not proc.alive,
                      timeout=60, interval=0.2)
        assert up, proc.describe()
        proc.assert_alive("daphne did not start")
        yield port
        proc.assert_alive("daphne died during the test")


def get(port: int, path: str, headers: dict | None = None):
    """(status, headers) of a GET on loopback; (0, None) when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "portolan.example.com",
                                           **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status, response.headers
    except OSError:
        return 0, None
    finally:
        conn.close()


def test_behind_the_tls_proxy_pages_are_https_only_and_checks_stay_plain(
    prod_daphne,
):
    # Plain HTTP straight to the app: redirected to https...
    status, headers = get(prod_daphne, "/login/")
    assert status == 301
    assert headers["Location"] == "https://portolan.example.com/login/"
    # ...except the health check and the scrape, which talk to the app itself.
    assert get(prod_daphne, "/healthz")[0] == 200
    assert get(prod_daphne, "/metrics")[0] == 401
    # Through the proxy (it says https): the page, HSTS, and a Secure cookie.
    status, headers = get(prod_daphne, "/login/", {"X-Forwarded-Proto": "https"})
    assert status == 200
    assert headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains")
    cookies = headers.get_all("Set-Cookie")
    assert any(c.startswith("csrftoken=") and "Secure" in c for c in cookies), cookies
