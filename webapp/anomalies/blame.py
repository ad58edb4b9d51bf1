"""Which side of a failing connect is at fault, from what the server serves.

A refused connect says only that nothing listened on that port at that moment.
Whose fault that is depends on the port's history on the server, which the
collector reports (``processes``: the ports listened on now; ``ports``: every
port seen listened on) and the analysis remembers (``Memory.served``: when
each port was last seen served):

* ``serving``: the port is served now (or the server's services are unknown,
  so nothing can be said): the usual rules judge the server;
* ``stopped``: served before, not now: the server's fault;
* ``unserved``: never served: the client calls a port nothing serves, its
  own fault.
"""

from __future__ import annotations

__all__ = ["SERVING", "STOPPED", "UNSERVED", "port_state", "served_now"]

SERVING, STOPPED, UNSERVED = "serving", "stopped", "unserved"


def served_now(data: dict) -> set[int] | None:
    """The TCP ports a running container listens on now; None when unknown
    (not a container, not running, or its processes were not read).

    >>> served_now({"type": "container", "state": "running",
    ...             "processes": [{"pid": 1, "port": 80, "proto": "tcp"},
    ...                           {"pid": 2, "port": None}]})
    {80}
    """
    processes = data.get("processes")
    if data.get("type") != "container" or data.get("state") != "running":
        return None
    if not isinstance(processes, list) or not processes:
        return None
    return {int(p["port"]) for p in processes
            if isinstance(p, dict) and isinstance(p.get("port"), int)
            and p.get("proto", "tcp") == "tcp"}


def port_state(data: dict, port: int,
               served_at: dict[int, float] | None = None) -> tuple[str, float | None]:
    """``(state, last time seen served)`` of ``port`` on a server node.

    >>> api = {"type": "container", "state": "running", "ports": [80, 81],
    ...        "processes": [{"pid": 1, "port": 80, "proto": "tcp"}]}
    >>> port_state(api, 80), port_state(api, 81, {81: 5.0}), port_state(api, 99)
    (('serving', None), ('stopped', 5.0), ('unserved', None))
    """
    now = served_now(data)
    served_at = served_at or {}
    if now is None or port in now:
        return SERVING, None
    if port in served_at or port in (data.get("ports") or ()):
        return STOPPED, served_at.get(port)
    return UNSERVED, None
