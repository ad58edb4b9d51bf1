"""The collector's settings: defaults, every variable read, errors that name it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.settings import CollectorSettings, SettingsError, settings_from_env

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_when_nothing_is_set():
    s = settings_from_env({}, hostname="node-1")
    assert s == CollectorSettings(host_id="node-1")
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.key_prefix == "portolan"
    assert (s.interval, s.node_ttl, s.flow_ttl) == (1.0, 30.0, 300.0)
    assert (s.history_step, s.history_fine, s.history_coarse_step,
            s.history_window) == (5.0, 900.0, 60.0, 3600.0)
    assert s.trace_udp is True and s.log_level == "INFO"


def test_empty_values_mean_the_default():
    """compose passes ``${VAR:-}``: an unset variable arrives as ''."""
    env = {"PORTOLAN_HOST_ID": "", "PORTOLAN_TRACE_UDP": "", "PORTOLAN_INTERVAL": ""}
    assert settings_from_env(env, hostname="node-1") == CollectorSettings("node-1")


def test_every_variable_is_read():
    env = {
        "REDIS_URL": "redis://10.0.0.5:6380/2",
        "PORTOLAN_HOST_ID": "db-7.eu",
        "PORTOLAN_KEY_PREFIX": "staging",
        "PORTOLAN_INTERVAL": "0.5",
        "PORTOLAN_NODE_TTL": "12",
        "PORTOLAN_FLOW_TTL": "60",
        "PORTOLAN_HISTORY_STEP": "1",
        "PORTOLAN_HISTORY_FINE": "120",
        "PORTOLAN_HISTORY_COARSE_STEP": "10",
        "PORTOLAN_HISTORY_WINDOW": "600",
        "PORTOLAN_TRACE_UDP": "off",
        "LOG_LEVEL": "debug",
    }
    assert settings_from_env(env, hostname="ignored") == CollectorSettings(
        host_id="db-7.eu", redis_url="redis://10.0.0.5:6380/2", key_prefix="staging",
        interval=0.5, node_ttl=12.0, flow_ttl=60.0, history_step=1.0,
        history_fine=120.0, history_coarse_step=10.0, history_window=600.0,
        trace_udp=False, log_level="DEBUG",
    )


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_trace_udp_words(value, expected):
    env = {"PORTOLAN_TRACE_UDP": value}
    assert settings_from_env(env, hostname="h").trace_udp is expected


@pytest.mark.parametrize(("env", "message"), [
    ({"PORTOLAN_INTERVAL": "fast"}, "PORTOLAN_INTERVAL must be a number, not 'fast'"),
    ({"PORTOLAN_INTERVAL": "0"}, "PORTOLAN_INTERVAL must be positive"),
    ({"PORTOLAN_NODE_TTL": "-5"}, "PORTOLAN_NODE_TTL must be positive"),
    ({"PORTOLAN_FLOW_TTL": "nan"}, "PORTOLAN_FLOW_TTL must be positive"),
    ({"PORTOLAN_HISTORY_STEP": "inf"}, "PORTOLAN_HISTORY_STEP must be positive"),
    ({"PORTOLAN_HISTORY_FINE": "x"}, "PORTOLAN_HISTORY_FINE must be a number"),
    ({"PORTOLAN_HISTORY_COARSE_STEP": "0"}, "PORTOLAN_HISTORY_COARSE_STEP"),
    ({"PORTOLAN_HISTORY_WINDOW": "-1"}, "PORTOLAN_HISTORY_WINDOW must be positive"),
    ({"PORTOLAN_TRACE_UDP": "maybe"},
     "PORTOLAN_TRACE_UDP must be true or false, not 'maybe'"),
    ({"PORTOLAN_HOST_ID": "bad host"}, "PORTOLAN_HOST_ID: invalid host id 'bad host'"),
    ({"PORTOLAN_HOST_ID": "-leading"}, "PORTOLAN_HOST_ID"),
    ({"PORTOLAN_KEY_PREFIX": "a:b"}, "PORTOLAN_KEY_PREFIX: invalid Redis key prefix"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL must start with redis://"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of"),
])
def test_bad_values_name_their_variable(env, message):
    with pytest.raises(SettingsError) as raised:
        settings_from_env(env, hostname="h")
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_bad_redis_url_does_not_show_its_password():
    with pytest.raises(SettingsError) as raised:
        settings_from_env({"REDIS_URL": "redis//:hunter2@db:6379"}, hostname="h")
    assert "hunter2" not in str(raised.value)


def test_an_invalid_hostname_default_is_refused_too():
    with pytest.raises(SettingsError, match="PORTOLAN_HOST_ID"):
        settings_from_env({}, hostname="under score?")


def test_settings_are_frozen():
    s = settings_from_env({}, hostname="h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.interval = 2.0  # type: ignore[misc]


def test_web_settings_take_the_collectors_values(tmp_path):
    """webapp.settings reads the shared PORTOLAN_* values through collector.settings.

    Loaded in a fresh interpreter with a known environment: in this process the
    settings were loaded before other tests' fixtures changed ``REDIS_URL``.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PORTOLAN_") and k not in ("REDIS_URL", "LOG_LEVEL")}
    env.update(REDIS_URL="redis://127.0.0.1:7777/3", PORTOLAN_NODE_TTL="42",
               PORTOLAN_HOST_ID="web-1", PORTOLAN_VAR_DIR=str(tmp_path),
               DJANGO_SETTINGS_MODULE="webapp.settings")
    script = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.REDIS_URL, s.PORTOLAN['NODE_TTL'], "
        "s.PORTOLAN['HOST_ID'], s.COLLECTOR.node_ttl]))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == ["redis://127.0.0.1:7777/3", 42.0, "web-1", 42.0]
    expected = settings_from_env(env)
    assert (expected.redis_url, expected.node_ttl) == ("redis://127.0.0.1:7777/3", 42.0)
