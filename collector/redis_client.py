"""Makes the Redis client from ``REDIS_URL``: one Redis, or a Redis Cluster.

Every process (collector, analyzer, web tier) gets its client here, so the
URL means the same thing everywhere:

``redis://host:port/db``, ``rediss://...``, ``unix://...``
    One Redis server (redis-py's own URL forms).
``redis+cluster://[user:password@]host:port[,host:port...][/]``
    A Redis Cluster; the listed nodes are only where to start (any one that
    answers gives the client the whole cluster map), and ``rediss+cluster://``
    is the same over TLS. A cluster has only database 0.

Keys that one transaction, Lua script or multi-key command uses together
share a hash tag (see ``collector.schema.Keys``), so every call works on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

__all__ = [
    "REDIS_ERRORS",
    "ClusterAddress",
    "async_redis_client",
    "is_cluster_url",
    "parse_cluster_url",
    "redis_client",
]

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # -> TLS

# What an unreachable Redis, a refused write or a cluster failover raises.
# redis-py's cluster client raises some of its errors (no reachable node, a
# slot that no node serves yet) outside redis.RedisError.
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """Where a cluster's startup nodes are, and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster.

    >>> is_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")
    True
    >>> is_cluster_url("redis://127.0.0.1:6379/0")
    False
    """
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _host_port(text: str, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"REDIS_URL {_redacted(url)!r}: cluster node {text!r} is not host:port"
        )
    return unquote(host), int(port)


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    return f"{scheme}{sep}***@{hosts}" if at else url


def parse_cluster_url(url: str) -> ClusterAddress:
    """The startup nodes and login of a ``redis+cluster://`` URL.

    >>> parse_cluster_url("redis+cluster://:s3cret@a:7000,[::1]:7001/").nodes
    (('a', 7000), ('::1', 7001))
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"REDIS_URL {_redacted(url)!r} does not name a cluster")
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    if path not in ("", "0"):
        raise ValueError(
            f"REDIS_URL {_redacted(url)!r}: a Redis Cluster has only database 0"
        )
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_host_port(h, url) for h in hosts.split(",") if h)
    if not nodes:
        raise ValueError(f"REDIS_URL {_redacted(url)!r} names no cluster node")
    return ClusterAddress(nodes, username, password, CLUSTER_SCHEMES[scheme.lower()])


def _cluster_options(address: ClusterAddress, options: dict) -> dict:
    login = {"username": address.username, "password": address.password}
    return {
        **{k: v for k, v in login.items() if v is not None},
        "ssl": address.ssl,
        # A failover leaves some slots unserved for a few seconds: keep
        # serving the others meanwhile, and learn the new map as it comes.
        "require_full_coverage": False,
        **options,
    }


def redis_client(url: str, *, retries: int = 3, **options):
    """A client for ``url``: ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    Failed commands are retried ``retries`` times with exponential backoff
    (0: fail at once, for callers that must decide themselves whether a
    write whose answer was lost may be sent again). ``options`` go to the
    connections, e.g. ``socket_timeout``.
    """
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, retry=retry, **options)
    address = parse_cluster_url(url)
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in address.nodes],
        retry=retry, **_cluster_options(address, options),
    )


def async_redis_client(url: str, *, retries: int = 3, **options):
    """The asyncio twin of ``redis_client`` (for the WebSocket tier); ``await
    client.initialize()`` before pub/sub, which a cluster client needs."""
    retry = redis.asyncio.retry.Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    if not is_cluster_url(url):
        return redis.asyncio.Redis.from_url(url, retry=retry, **options)
    address = parse_cluster_url(url)
    nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in address.nodes]
    return redis.asyncio.cluster.RedisCluster(
        startup_nodes=nodes, retry=retry, **_cluster_options(address, options),
    )
