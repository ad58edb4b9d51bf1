"""Container details kept current from the Docker events stream.

:class:`DockerWatcher` lists and inspects every container once, then follows
``/events`` in a background thread and re-inspects only the container an
event names: one inspect per event, never one per interval, so the cost of a
quiet host with hundreds of containers is one idle connection.

Nothing is missed across a reconnect: the events stream is opened *before*
the listing, so an event that happens while listing is delivered afterwards
(and its inspect is merely redundant). When the stream ends or fails (the
daemon restarted, the socket went away) the watcher logs, backs off
exponentially with jitter, reconnects and re-lists, replacing its view.

Details are plain dicts (see :func:`details_from_inspect`); the low-level API
is used throughout so no ``Container`` objects are built.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable

import docker
import docker.errors
import requests.exceptions

__all__ = ["NETWORK_EVENTS", "WATCHED_EVENTS", "DockerWatcher", "details_from_inspect"]

log = logging.getLogger("portolan.collector.docker_events")

WATCHED_EVENTS = (
    "create",
    "start",
    "die",
    "destroy",
    "oom",
    "health_status",
    "rename",
    "pause",
    "unpause",
    "restart",
    "update",
)
# ``docker network connect/disconnect`` on an existing container is reported
# only as a network event naming the container in Actor.Attributes.container;
# no container event follows, yet the container's networks and IPs changed.
NETWORK_EVENTS = ("connect", "disconnect")

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
K8S_POD = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"
K8S_CONTAINER = "io.kubernetes.container.name"

_ENGINE_ERRORS = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    OSError,
    ValueError,  # a truncated JSON line when the daemon dies mid-event
)


def _time(value: str | None) -> str:
    """Docker's zero time (never started/finished) becomes ""."""
    return "" if not value or value.startswith("0001-01-01") else value


def _exit_code(attributes: dict) -> int:
    """A die event's ``exitCode`` attribute (a string), 0 if absent."""
    try:
        return int(attributes.get("exitCode") or 0)
    except ValueError:
        return 0


def _cpu_limit(host_config: dict) -> float | None:
    nano = host_config.get("NanoCpus") or 0
    if nano:
        return nano / 1e9
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or 0
    if quota > 0:
        return quota / (period or 100_000)
    return None


def _ports(network_settings: dict) -> list[dict]:
    ports = []
    for spec, bindings in sorted((network_settings.get("Ports") or {}).items()):
        port, _, proto = spec.partition("/")
        for binding in bindings or [{}]:
            host_port = (binding or {}).get("HostPort") or ""
            ports.append(
                {
                    "container_port": int(port),
                    "proto": proto or "tcp",
                    "host_ip": (binding or {}).get("HostIp") or "",
                    "host_port": int(host_port) if host_port.isdigit() else None,
                }
            )
    return ports


def details_from_inspect(attrs: dict) -> dict:
    """Flatten an engine ``GET /containers/{id}/json`` answer into plain data.

    >>> d = details_from_inspect({"Id": "ab", "Name": "/web", "Config": {"Labels": {
    ...     "com.docker.compose.project": "shop"}}})
    >>> d["name"], d["compose_project"], d["state"]
    ('web', 'shop', 'unknown')
    """
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    host_config = attrs.get("HostConfig") or {}
    network_settings = attrs.get("NetworkSettings") or {}
    labels = dict(config.get("Labels") or {})
    networks = {}
    ips = []
    for net_name, net in sorted((network_settings.get("Networks") or {}).items()):
        net = net or {}
        networks[net_name] = {
            "ip": net.get("IPAddress") or "",
            "ipv6": net.get("GlobalIPv6Address") or "",
            "gateway": net.get("Gateway") or "",
            "mac": net.get("MacAddress") or "",
        }
        for key in ("IPAddress", "GlobalIPv6Address"):
            if net.get(key) and net[key] not in ips:
                ips.append(net[key])
    command = [attrs.get("Path") or ""] + list(attrs.get("Args") or [])
    memory = host_config.get("Memory") or 0
    return {
        "id": attrs.get("Id", ""),
        "name": (attrs.get("Name") or "").lstrip("/"),
        "image": config.get("Image") or "",
        "image_id": attrs.get("Image") or "",
        "command": " ".join(part for part in command if part),
        "state": state.get("Status") or "unknown",
        "exit_code": int(state.get("ExitCode") or 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": int(attrs.get("RestartCount") or 0),
        "health": ((state.get("Health") or {}).get("Status")) or "",
        "created": _time(attrs.get("Created")),
        "started_at": _time(state.get("StartedAt")),
        "finished_at": _time(state.get("FinishedAt")),
        "pid": int(state.get("Pid") or 0),
        "labels": labels,
        "compose_project": labels.get(COMPOSE_PROJECT, ""),
        "compose_service": labels.get(COMPOSE_SERVICE, ""),
        "k8s_pod": labels.get(K8S_POD, ""),
        "k8s_namespace": labels.get(K8S_NAMESPACE, ""),
        "k8s_container": labels.get(K8S_CONTAINER, ""),
        "networks": networks,
        "ips": ips,
        "ports": _ports(network_settings),
        "cpu_limit_cores": _cpu_limit(host_config),
        "memory_limit_bytes": memory or None,
        "restart_policy": (host_config.get("RestartPolicy") or {}).get("Name") or "",
    }


class DockerWatcher:
    """Follow one Docker engine; ``snapshot()`` is its current containers.

    Use: ``watcher = DockerWatcher().start(); watcher.wait_synced(10)``, then
    ``watcher.snapshot()`` once per interval.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        client_factory: Callable[[], docker.APIClient] | None = None,
    ):
        self.base_url = base_url
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._client_factory = client_factory or self._default_client
        self._lock = threading.Lock()
        self._containers: dict[str, dict] = {}
        self._oom: Counter = Counter()
        self._events: Counter = Counter()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: docker.APIClient | None = None
        self._stream = None
        self.connected = False
        self.syncs = 0  # completed (re)listings; >1 means it reconnected
        self.last_error = ""

    def _default_client(self) -> docker.APIClient:
        if self.base_url:
            return docker.APIClient(base_url=self.base_url, timeout=self.timeout)
        return docker.from_env(timeout=self.timeout).api

    # -- public

    def start(self) -> DockerWatcher:
        """Start the background thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="portolan-docker-watcher", daemon=True
            )
            self._thread.start()
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the first listing is done; False on timeout."""
        return self._synced.wait(timeout)

    def snapshot(self) -> dict[str, dict]:
        """Container id -> details (with ``oom_kills``), a copy safe to keep."""
        with self._lock:
            return {
                cid: {**details, "oom_kills": self._oom.get(cid, 0)}
                for cid, details in self._containers.items()
            }

    @property
    def oom_counts(self) -> dict[str, int]:
        """Container id -> OOM events seen since the watcher started."""
        with self._lock:
            return dict(self._oom)

    @property
    def event_counts(self) -> dict[str, int]:
        """Event action -> how many were seen since the watcher started."""
        with self._lock:
            return dict(self._events)

    def close(self) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
            self._thread = None
        self._drop_client()

    def __enter__(self) -> DockerWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the thread

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except _ENGINE_ERRORS:
                pass

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except (*_ENGINE_ERRORS, AttributeError):
                pass

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._follow()
                failures = 0  # a clean end of stream: the daemon went away
                error = "events stream ended"
            except _ENGINE_ERRORS as exc:
                failures += 1
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._close_stream()
            if self._stop.is_set():
                break
            if self.connected:
                log.warning("Docker engine lost (%s); reconnecting", error)
            self.connected = False
            self.last_error = error
            self._drop_client()
            # Full jitter keeps several collectors from reconnecting in step.
            cap = min(self.backoff_max, self.backoff_initial * 2**failures)
            self._stop.wait(random.uniform(self.backoff_initial / 2, cap))

    def _follow(self) -> None:
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        self._stream = client.events(
            decode=True,
            # Filters on different keys are ANDed, values of one key ORed, so
            # this also lets through network create/destroy: _handle drops them.
            filters={
                "type": ["container", "network"],
                "event": [*WATCHED_EVENTS, *NETWORK_EVENTS],
            },
        )
        self._relist(client)
        for event in self._stream:
            if self._stop.is_set():
                return
            self._handle(client, event)

    def _relist(self, client) -> None:
        fresh: dict[str, dict] = {}
        for entry in client.containers(all=True):
            details = self._inspect(client, entry["Id"])
            if details is not None:
                fresh[details["id"]] = details
        with self._lock:
            self._containers = fresh
            self._oom = Counter({c: n for c, n in self._oom.items() if c in fresh})
        self.syncs += 1
        if not self.connected:
            log.info("Docker engine connected: %d containers", len(fresh))
        self.connected = True
        self.last_error = ""
        self._synced.set()

    @staticmethod
    def _inspect(client, container_id: str) -> dict | None:
        try:
            return details_from_inspect(client.inspect_container(container_id))
        except docker.errors.NotFound:
            return None  # removed between the event (or listing) and now

    def _mark_exited(self, cid: str, exit_code: int) -> None:
        """Show a known container exited, from its die event alone."""
        with self._lock:
            if cid in self._containers:
                self._containers[cid] = {
                    **self._containers[cid],
                    "state": "exited",
                    "pid": 0,
                    "exit_code": exit_code,
                }

    def _handle(self, client, event: dict) -> None:
        action = (event.get("Action") or event.get("status") or "").split(":")[0]
        actor = event.get("Actor") or {}
        if event.get("Type") == "network":
            if action not in NETWORK_EVENTS:
                return
            # The actor is the network; re-inspect the container it names.
            action = f"network_{action}"
            cid = (actor.get("Attributes") or {}).get("container") or ""
        else:
            cid = event.get("id") or actor.get("ID") or ""
        if not action or not cid:
            return
        with self._lock:
            self._events[action] += 1
            if action == "oom":
                self._oom[cid] += 1
            if action == "destroy":
                self._containers.pop(cid, None)
                self._oom.pop(cid, None)
                return
        try:
            details = self._inspect(client, cid)
        except _ENGINE_ERRORS:
            if action == "die":
                # When dockerd itself stops, the inspect fails and the listing
                # waits for its return: the event alone says it exited, so it
                # does not show running until then. (Marked only now, not before
                # the inspect: one that restarts must not flash "exited".)
                self._mark_exited(cid, _exit_code(actor.get("Attributes") or {}))
            raise
        with self._lock:
            if details is None:
                self._containers.pop(cid, None)
            else:
                self._containers[cid] = details
