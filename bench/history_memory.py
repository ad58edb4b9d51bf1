"""Redis memory of one hour of history per host, on the fleet benchmark's world.

Some hosts of ``synthetic_world``'s fleet world (500 hosts, 10,000 containers,
50,000 edges: 20 containers and ~100 flows a host) report through the
collector's real ``RedisReporter`` for one simulated hour (``now`` advanced by
hand, so it takes a minute, not an hour); each second a share of the flows
(``--active``) carries traffic. Then the history keys' ``MEMORY USAGE`` is
summed and divided by the hosts: what one host's hour of history (15 min fine,
1 h coarse) costs Redis; and the time to read a past view at two moments.
The analyzer's status history is written beside it for a fleet where
``--failing`` of the containers turn red and recover, and reported apart
(it is one key for the whole fleet).

    .venv/bin/python bench/history_memory.py [--hosts 20] [--active 0.05]
        [--report-every 1] [--failing 0.01]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import make_world, traffic  # noqa: E402

from collector.reporter import HistoryPolicy, HostReport, RedisReporter  # noqa: E402
from collector.reporter import redis_client as reporter_client  # noqa: E402
from collector.schema import (  # noqa: E402
    HostRecord,
    Keys,
    SchemaError,
    container_node_id,
)
from tests.conftest import RedisServer  # noqa: E402
from webapp.topology.store import read_state_at  # noqa: E402

try:  # the status history (issue 23); absent before it
    from webapp.anomalies.history import StatusHistory
except ImportError:  # pragma: no cover - measuring the version before
    StatusHistory = None


def simulate(url: str, hosts: int, active: float, every: float, failing: float,
             seconds: float = 3600.0) -> dict:
    world = make_world(500, 10_000, 50_000)
    mine = list(world.containers)[:hosts]
    keys = Keys("portolan")
    client = reporter_client(url)
    reporters = {h: RedisReporter(client, keys, history=HistoryPolicy())
                 for h in mine}
    addrs = {h: {r.ips[0]: container_node_id(h, r.id) for r in world.containers[h]}
             for h in mine}
    rng = random.Random(3)
    share = 1 - (1 - active) ** every  # a flow's chance of traffic in a report
    statuses = StatusHistory(client, "portolan") if StatusHistory else None
    everyone = [container_node_id(h, r.id) for h in world.containers
                for r in world.containers[h]]
    red: dict[str, float] = {}
    t0 = 1_800_000_000.0
    t = 0.0
    while t < seconds:
        for h in mine:
            deltas = traffic(world.flows[h], share, rng)
            reporters[h].report(HostReport(
                host=HostRecord(id=h, hostname=h, mode="ebpf"),
                containers=world.containers[h], addrs=addrs[h], flows=deltas,
                interval=every), now=t0 + t)
        if statuses is not None:
            # Each container fails now and then for a minute.
            for n in everyone:
                if n not in red and rng.random() < failing * every / 600:
                    red[n] = t + 60
            for n in [n for n, until in red.items() if until <= t]:
                del red[n]
            statuses.record(t0 + t, {n: {
                "status": "critical", "own_status": "critical",
                "reasons": ["memory at 97% of its limit"], "name": n[-12:],
                "type": "container"} for n in red}, [
                {"target": n, "rank": i + 1, "name": n[-12:], "why": "memory"}
                for i, n in enumerate(sorted(red)[:5])])
        t += every
    per_host = 0
    for h in mine:
        for tier in ("fine", "coarse", "totals"):
            try:
                key = keys.history(h, tier)
            except SchemaError:  # no keyframes before issue 23
                continue
            per_host += client.memory_usage(key, samples=0) or 0
    status_bytes = 0
    if statuses is not None:
        status_bytes = client.memory_usage(statuses.key, samples=0) or 0
    fine = client.zcard(keys.history(mine[0], "fine"))
    coarse = client.zcard(keys.history(mine[0], "coarse"))
    # What a past view costs to read, per host: in the fine tier, and in the
    # coarse one (the keyframe and the counts since).
    read_ms = {}
    for name, back in (("fine", 300.0), ("coarse", 1800.0)):
        at = t0 + t - min(back, 0.9 * seconds)  # (a short run: both recent)
        started = time.perf_counter()
        for _ in range(5):
            state = read_state_at(client, keys, at)
        read_ms[name] = (time.perf_counter() - started) / 5 / len(mine) * 1000
        assert len(state.hosts) == len(mine)
    return {"per_host": per_host / len(mine), "fine": fine, "coarse": coarse,
            "status_history": status_bytes, "red_now": len(red),
            "read_ms": read_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--active", type=float, default=0.05,
                        help="share of flows with traffic each second")
    parser.add_argument("--report-every", type=float, default=1.0)
    parser.add_argument("--failing", type=float, default=0.01,
                        help="share of containers red for a minute every 10 min")
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        r = simulate(server.url, args.hosts, args.active, args.report_every,
                     args.failing, args.seconds)
    finally:
        server.stop()
    print(f"{args.hosts} hosts of the fleet world, {args.active:.0%} of flows "
          f"active a second, a report every {args.report_every:g} s, "
          f"{args.seconds:g} s simulated")
    print(f"history per host: {r['per_host'] / 1000:.1f} kB "
          f"({r['fine']} fine + {r['coarse']} coarse snapshots)")
    print("reading a past view, per host: {fine:.2f} ms (fine tier), "
          "{coarse:.2f} ms (coarse tier)".format(**r["read_ms"]))
    if StatusHistory is not None:
        print(f"status history (whole fleet, {args.failing:.0%} of 10,000 "
              f"containers red a minute in ten): {r['status_history'] / 1000:.1f} kB")


if __name__ == "__main__":
    main()
