"""A die event marks its container exited even when the engine cannot be asked.

When dockerd stops gracefully (no live-restore) it stops the containers and
closes its API: the die events' inspects fail, and the watcher must not keep
showing those containers running until the engine returns.
"""

from __future__ import annotations

import pytest
import requests.exceptions

from collector.docker_events import DockerWatcher

CID = "5c29e5604605b11c05dac65ec4970925c0aea59cda33ba908b4a80f460f6e746"
# Recorded from Docker 20.10 (`docker events --format '{{json .}}'`).
DIE_EVENT = {
    "status": "die",
    "id": CID,
    "from": "portolan-test:busybox-15bb3ca12d",
    "Type": "container",
    "Action": "die",
    "Actor": {
        "ID": CID,
        "Attributes": {
            "exitCode": "137",
            "image": "portolan-test:busybox-15bb3ca12d",
            "name": "pt-die-rec",
        },
    },
    "scope": "local",
    "time": 1795703180,
    "timeNano": 1795703180767132758,
}
RUNNING = {
    "id": CID,
    "name": "pt-die-rec",
    "state": "running",
    "exit_code": 0,
    "pid": 4242,
    "ips": ["172.17.0.2"],
}


class ClosedEngine:
    """The engine mid-shutdown: its API no longer answers."""

    def inspect_container(self, container_id):
        raise requests.exceptions.ConnectionError("Connection aborted.")


class Engine:
    """The engine answering the inspect with the container stopped."""

    def inspect_container(self, container_id):
        return {
            "Id": container_id,
            "Name": "/pt-die-rec",
            "State": {
                "Status": "exited",
                "ExitCode": 137,
                "FinishedAt": "2026-11-26T14:26:20.76Z",
            },
        }


def watching(details: dict) -> DockerWatcher:
    watcher = DockerWatcher(client_factory=lambda: None)
    watcher._containers = {details["id"]: dict(details)}
    return watcher


def test_die_marks_exited_when_the_inspect_fails():
    watcher = watching(RUNNING)
    # The engine error still ends the stream (the watcher reconnects)...
    with pytest.raises(requests.exceptions.ConnectionError):
        watcher._handle(ClosedEngine(), DIE_EVENT)
    # ...but the container is no longer shown running meanwhile.
    details = watcher.snapshot()[CID]
    assert details["state"] == "exited"
    assert details["exit_code"] == 137
    assert details["pid"] == 0
    assert details["name"] == "pt-die-rec"  # the rest is kept


def test_die_then_the_inspect_has_the_last_word():
    watcher = watching(RUNNING)
    watcher._handle(Engine(), DIE_EVENT)
    details = watcher.snapshot()[CID]
    assert details["state"] == "exited" and details["exit_code"] == 137
    assert details["finished_at"] == "2026-11-26T14:26:20.76Z"


def test_die_of_an_unknown_container_adds_nothing_without_the_engine():
    watcher = watching(RUNNING)
    other = {**DIE_EVENT, "id": "f" * 64, "Actor": {"ID": "f" * 64}}
    with pytest.raises(requests.exceptions.ConnectionError):
        watcher._handle(ClosedEngine(), other)
    assert set(watcher.snapshot()) == {CID}
