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

Each history format runs in turn on its own Redis, side by side: ``1``, every
snapshot standing alone (records, counts and rates, zstd JSON; as before
collector.history_format); ``2``, snapshots stored against the keyframe,
their columns JSON; ``3``, the same with the columns packed binary
(collector.history_columns), each snapshot with its last report's rates and
any record that changed (its metrics moved) stored whole; and ``4``, as the
collector writes now: no rates where the snapshot has a step, and only the
metric values that moved since the keyframe. Formats 2 and 3 are the
present encoder with those parts of it turned back. Per tier: the entries,
the blobs' bytes and what Redis adds per entry; per container: history,
live state (the host's other keys) and their sum against issue 17's goal
of 7 kB a container.
``--redis stock,shipped`` runs each format on a stock redis-server and on one
with Portolan's settings (deploy/redis.conf: listpack hashes and history).
``--metrics none,moving``: the containers' records without cgroup metrics
(as the fleet world has them), and with the metrics a collector reports,
moving every report (``synthetic_world.advance_metrics``).

    .venv/bin/python bench/history_memory.py [--hosts 20] [--active 0.05]
        [--report-every 1] [--failing 0.01] [--formats 1,2,3]
        [--fine 900] [--step 5] [--redis stock,shipped] [--metrics none,moving]
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

from synthetic_world import advance_metrics, make_world, traffic  # noqa: E402

import collector.history_format as history_format_module  # noqa: E402
import collector.reporter as reporter_module  # noqa: E402
from collector.reporter import HistoryPolicy, HostReport, RedisReporter  # noqa: E402
from collector.reporter import redis_client as reporter_client  # noqa: E402
from collector.schema import (  # noqa: E402
    HostRecord,
    Keys,
    SchemaError,
    container_node_id,
    encode_snapshot,
)
from tests.conftest import SHIPPED_REDIS_CONF, RedisServer  # noqa: E402
from webapp.topology.store import read_state_at  # noqa: E402

try:  # the status history (issue 23); absent before it
    from webapp.anomalies.history import StatusHistory
except ImportError:  # pragma: no cover - measuring the version before
    StatusHistory = None


GOAL_PER_CONTAINER = 7000  # issue 17: Redis memory per container
LIVE_KEYS = ("host", "containers", "container_metrics", "addrs", "flows", "rates",
             "ids", "applied")


class Format1:
    """The reporter's encoders as before collector.history_format: every
    snapshot stands alone, a keyframe holds only the totals."""

    @staticmethod
    def encode_history(snapshot: dict, frame: dict | None) -> bytes:
        return encode_snapshot(snapshot)

    @staticmethod
    def encode_keyframe(snapshot: dict) -> tuple[bytes, None]:
        return encode_snapshot({"ts": snapshot["ts"],
                                "totals": snapshot["totals"]}), None


def simulate(url: str, hosts: int, active: float, every: float, failing: float,
             seconds: float = 3600.0, history_format: int = 2,
             policy: HistoryPolicy | None = None, metrics: bool = False) -> dict:
    world = make_world(500, 10_000, 50_000)
    mine = list(world.containers)[:hosts]
    keys = Keys("portolan")
    client = reporter_client(url)
    saved = (reporter_module.encode_history, reporter_module.encode_keyframe)
    saved_pack = getattr(history_format_module, "pack_columns", None)
    saved_outgrows = getattr(reporter_module, "outgrows", None)
    saved_parts = {name: getattr(history_format_module, name, None)
                   for name in ("_shape", "_span")}
    if history_format in (2, 3) and saved_parts["_shape"] is not None:
        # As format 3 was written: records compared (and stored) whole,
        # and every snapshot's rates stored.
        history_format_module._shape = history_format_module._compact
        history_format_module._span = lambda snapshot: None
    if history_format == 1:
        reporter_module.encode_history = Format1.encode_history
        reporter_module.encode_keyframe = Format1.encode_keyframe
        if saved_outgrows is not None:  # no flow table to outgrow
            reporter_module.outgrows = lambda frame, fields: False
    elif history_format == 2 and saved_pack is not None:
        # JSON columns
        history_format_module.pack_columns = lambda parts, scaled=False: None
    try:
        return _simulate(client, keys, world, mine, active, every, failing,
                         seconds, policy or HistoryPolicy(), metrics)
    finally:
        reporter_module.encode_history, reporter_module.encode_keyframe = saved
        if saved_pack is not None:
            history_format_module.pack_columns = saved_pack
        if saved_outgrows is not None:
            reporter_module.outgrows = saved_outgrows
        for name, saved in saved_parts.items():
            if saved is not None:
                setattr(history_format_module, name, saved)


def _simulate(client, keys, world, mine, active, every, failing, seconds,
              policy, metrics=False) -> dict:
    reporters = {h: RedisReporter(client, keys, history=policy) for h in mine}
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
            if metrics:
                advance_metrics(world.containers[h], rng, every)
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
    tiers = {}  # tier -> [entries, blob bytes, MEMORY USAGE], over the hosts
    for h in mine:
        for tier in ("fine", "coarse", "totals"):
            try:
                key = keys.history(h, tier)
            except SchemaError:  # no keyframes before issue 23
                continue
            used = client.memory_usage(key, samples=0) or 0
            blobs = client.zrange(key, 0, -1)
            row = tiers.setdefault(tier, [0, 0, 0])
            row[0] += len(blobs)
            row[1] += sum(len(b) for b in blobs)
            row[2] += used
            per_host += used
    live = 0
    live_kinds: dict[str, int] = {}
    counted = set()
    for h in mine:
        for tier in ("fine", "coarse", "totals"):
            try:
                counted.add(keys.history(h, tier))
            except SchemaError:
                pass
        for kind in LIVE_KEYS:
            if not hasattr(keys, kind):  # no such key in the version measured
                continue
            key = getattr(keys, kind)(h)
            counted.add(key)
            used = client.memory_usage(key, samples=0) or 0
            live_kinds[kind] = live_kinds.get(kind, 0) + used
            live += used
    status_bytes = 0
    if statuses is not None:
        counted.add(statuses.key)
        status_bytes = client.memory_usage(statuses.key, samples=0) or 0
    # Every other key (fleet-wide indexes) is live state too: a key the
    # collector gains later is counted, not missed.
    others = {k.decode(): client.memory_usage(k, samples=0) or 0
              for k in client.scan_iter(count=1000)
              if k.decode() not in counted}
    live += sum(others.values())
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
    per_container = len(world.containers[mine[0]])
    return {"per_host": per_host / len(mine), "fine": fine, "coarse": coarse,
            "tiers": tiers, "hosts": len(mine), "containers": per_container,
            "live_per_host": live / len(mine), "others": others,
            "live_kinds": live_kinds,
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
    parser.add_argument("--formats", default="3,4",
                        help="history formats to run in turn (1: before "
                        "collector.history_format, 2: against the keyframe, "
                        "3: the same with its columns packed binary, 4: as "
                        "written now)")
    parser.add_argument("--step", type=float, default=HistoryPolicy().step,
                        help="fine history step, s")
    parser.add_argument("--fine", type=float, default=HistoryPolicy().fine,
                        help="fine history kept, s")
    parser.add_argument("--redis", default="shipped",
                        help="Redis settings to run each format on, in turn: "
                        "stock (redis-server's defaults) and/or shipped "
                        "(deploy/redis.conf)")
    parser.add_argument("--metrics", default="none,moving",
                        help="containers' metrics, in turn: none, and/or "
                        "moving (a collector's cgroup metrics, every report)")
    args = parser.parse_args()
    policy = HistoryPolicy(step=args.step, fine=args.fine)
    print(f"{args.hosts} hosts of the fleet world, {args.active:.0%} of flows "
          f"active a second, a report every {args.report_every:g} s, "
          f"{args.seconds:g} s simulated; history: fine every {policy.step:g} s "
          f"kept {policy.fine:g} s, coarse every {policy.coarse_step:g} s kept "
          f"{policy.window:g} s, keyframes every {policy.keyframe:g} s")
    results = {}
    configs = {"stock": None, "shipped": SHIPPED_REDIS_CONF}
    runs = [(int(f), c, m) for f in args.formats.split(",")
            for c in args.redis.split(",") for m in args.metrics.split(",")]
    for fmt, config, metrics in runs:
        server = RedisServer(configs[config])
        server.start()
        try:
            results[fmt, config, metrics] = r = simulate(
                server.url, args.hosts, args.active, args.report_every,
                args.failing, args.seconds, fmt, policy, metrics == "moving")
        finally:
            server.stop()
        n = r["containers"]
        print(f"\nformat {fmt}, {config} Redis, metrics {metrics}: history per host "
              f"{r['per_host'] / 1000:.1f} kB "
              f"({r['fine']} fine + {r['coarse']} coarse snapshots)")
        print("  tier     entries/host  blob B/entry  Redis B/entry  "
              "overhead B/entry  kB/host  B/container")
        for tier, (entries, blob, used) in r["tiers"].items():
            e = max(entries, 1)
            print(f"  {tier:7s} {entries / r['hosts']:13.1f} {blob / e:13.0f} "
                  f"{used / e:14.0f} {(used - blob) / e:17.0f} "
                  f"{used / r['hosts'] / 1000:8.1f} {used / r['hosts'] / n:12.0f}")
        history = r["per_host"] / n
        live = r["live_per_host"] / n
        print(f"  per container: history {history:,.0f} B + live state "
              f"{live:,.0f} B = {history + live:,.0f} B "
              f"({(history + live) / GOAL_PER_CONTAINER:.2f}x the 7 kB goal; "
              f"history alone {history / GOAL_PER_CONTAINER:.2f}x)")
        print("  live state per container: " + ", ".join(
            f"{kind} {used / r['hosts'] / n:,.0f} B"
            for kind, used in r["live_kinds"].items())
            + f", fleet-wide keys {sum(r['others'].values()) / r['hosts'] / n:,.0f} B"
            f" ({len(r['others'])} keys)")
        print("  reading a past view, per host: {fine:.2f} ms (fine tier), "
              "{coarse:.2f} ms (coarse tier)".format(**r["read_ms"]))
        if StatusHistory is not None:
            print(f"  status history (whole fleet, {args.failing:.0%} of 10,000 "
                  f"containers red a minute in ten): "
                  f"{r['status_history'] / 1000:.1f} kB")
    if len(results) > 1:
        first = min(results)
        print("\nhistory per host-hour: " + ", ".join(
            f"format {f}, {c}, metrics {m} {r['per_host'] / 1000:.1f} kB "
            f"({r['per_host'] / results[first]['per_host']:.2f}x the first)"
            for (f, c, m), r in sorted(results.items())))


if __name__ == "__main__":
    main()
