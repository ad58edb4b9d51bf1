"""Container identity from the Docker engine, as plain ContainerRecords.

One list call per interval (the engine's list endpoint already carries state,
labels and network addresses), never one inspect per container, so a host with
hundreds of containers costs one request.
"""

from __future__ import annotations

import logging
import re
import time

import docker
import docker.errors
import requests.exceptions

from collector.schema import ContainerRecord

log = logging.getLogger("portolan.collector.docker")

_EXIT_STATUS = re.compile(r"^Exited \((-?\d+)\)")


def record_from_list_entry(entry: dict) -> ContainerRecord:
    """Turn one entry of the engine's ``GET /containers/json`` into a record.

    >>> record_from_list_entry({"Id": "ab", "Names": ["/web"], "State": "exited",
    ...     "Status": "Exited (3) 2 seconds ago"}).exit_code
    3
    """
    names = entry.get("Names") or []
    name = names[0].lstrip("/") if names else entry.get("Id", "")[:12]
    match = _EXIT_STATUS.match(entry.get("Status") or "")
    networks = (entry.get("NetworkSettings") or {}).get("Networks") or {}
    ips = []
    for net in networks.values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            ip = (net or {}).get(key)
            if ip and ip not in ips:
                ips.append(ip)
    published = [
        {"ip": p.get("IP") or "0.0.0.0", "port": int(p["PublicPort"]),
         "target": int(p["PrivatePort"]), "proto": p.get("Type") or "tcp"}
        for p in entry.get("Ports") or []
        if p.get("PublicPort") and p.get("PrivatePort")
    ]
    return ContainerRecord(
        id=entry.get("Id", ""),
        name=name,
        image=entry.get("Image") or "",
        state=entry.get("State") or "unknown",
        exit_code=int(match.group(1)) if match else 0,
        ips=ips,
        labels=dict(entry.get("Labels") or {}),
        published=published,
        started_at=str(entry.get("Created") or ""),
    )


class DockerSource:
    """Lists containers; when the engine is away, says so and retries later."""

    def __init__(self, base_url: str | None = None):
        self.base_url = base_url
        self.client = None
        self.available = False
        self._retry_at = 0.0
        self._backoff = 1.0

    def _connect(self):
        if self.base_url:
            return docker.DockerClient(base_url=self.base_url, timeout=10)
        return docker.from_env(timeout=10)

    def containers(self) -> list[ContainerRecord] | None:
        """All containers (running or not), or None while the engine is away."""
        if time.monotonic() < self._retry_at:
            return None
        try:
            if self.client is None:
                self.client = self._connect()
            entries = self.client.api.containers(all=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                OSError) as exc:
            if self.available or self.client is None:
                log.warning("Docker engine unavailable (%s); retrying", exc)
            self.available = False
            self.client = None
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 30.0)
            return None
        if not self.available:
            log.info("Docker engine connected")
        self.available = True
        self._backoff = 1.0
        return [record_from_list_entry(e) for e in entries]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
