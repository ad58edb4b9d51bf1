"""A Redis lease: one holder at a time among processes, taken over on silence.

The analyzer and the graph builder each run as one active process and any
number of standbys. The active one renews its lease every step; a standby
polls, and takes the lease once it has lapsed (the holder died or lost Redis)
within ``ttl`` seconds. A single key with a TTL, so it works on one Redis and
on a Redis Cluster alike.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

from collector.redis_client import REDIS_ERRORS

__all__ = ["Lease", "owner_id"]

log = logging.getLogger("portolan.lease")

# Take the lease when free, or extend it when it is ours: 1 if we hold it.
_ACQUIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def owner_id() -> str:
    """A holder id that names the machine and process, unique per start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


class Lease:
    """The lease stored at ``key``, held for ``ttl`` seconds per renewal."""

    def __init__(self, client: redis.Redis, key: str, ttl: float,
                 owner: str | None = None):
        self.key = key
        self.ttl = ttl
        self.owner = owner or owner_id()
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take or extend the lease; True while this process holds it."""
        ttl_ms = max(1, int(self.ttl * 1000))
        return bool(self._acquire(keys=[self.key], args=[self.owner, ttl_ms]))

    def release(self) -> None:
        """Give the lease up, only if it is still ours (never raises)."""
        try:
            self._release(keys=[self.key], args=[self.owner])
        except REDIS_ERRORS as exc:
            log.warning("could not release the lease %s: %s", self.key, exc)
