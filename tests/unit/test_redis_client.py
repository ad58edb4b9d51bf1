"""REDIS_URL: one Redis or a Redis Cluster, and what each side accepts."""

import pytest
import redis.cluster

from collector.redis_client import parse_cluster_url, redis_client
from collector.settings import SettingsError, settings_from_env


@pytest.mark.parametrize("url, nodes, login", [
    ("redis+cluster://10.0.0.1:7000/", (("10.0.0.1", 7000),), (None, None)),
    ("redis+cluster://u:p%40ss@a:1,b:2", (("a", 1), ("b", 2)), ("u", "p@ss")),
    ("rediss+cluster://:pw@[::1]:7000/0", (("::1", 7000),), (None, "pw")),
])
def test_cluster_urls_name_their_startup_nodes(url, nodes, login):
    address = parse_cluster_url(url)
    assert address.nodes == nodes
    assert (address.username, address.password) == login
    assert address.ssl == url.startswith("rediss")


@pytest.mark.parametrize("url", [
    "redis+cluster://", "redis+cluster://a:notaport/", "redis+cluster://a:7000/3",
    "redis+cluster://:secret@a/",
])
def test_bad_cluster_urls_are_refused_without_the_password(url):
    with pytest.raises(ValueError, match="REDIS_URL") as info:
        parse_cluster_url(url)
    assert "secret" not in str(info.value)


def test_the_factory_picks_the_client_by_url():
    # Neither connects before its first command.
    assert isinstance(redis_client("redis://127.0.0.1:9/0"), redis.Redis)
    with pytest.raises(redis.exceptions.RedisClusterException):
        # A cluster client learns the cluster map at once: none answers here.
        redis_client("redis+cluster://127.0.0.1:9/", retries=0)


def test_collector_settings_take_a_cluster_url():
    env = {"REDIS_URL": "redis+cluster://a:7000,b:7000/", "PORTOLAN_HOST_ID": "h"}
    assert settings_from_env(env).redis_url == env["REDIS_URL"]
    with pytest.raises(SettingsError, match="database 0"):
        settings_from_env({**env, "REDIS_URL": "redis+cluster://a:7000/2"})
