"""The graph builder's CPU per round, alone: no web tier, no concurrent writers.

Writes ``synthetic_world``'s world into a throwaway Redis through real
``RedisReporter``s, then, round after round, lets every host report (a
``--share`` of its flows with traffic) and runs ``GraphBuilder.step`` on the
hosts that reported, split in ``--steps`` batches as the live builder sees
them (one step per ``min_interval`` of notices). Prints the builder's CPU per
round (the process's CPU around its steps only) by phase (``--phases``:
typical, all, analyzer: the first with an analyzer whose warnings about
``--red`` of the containers change every round, churn: the first with one new
flow a round, which rebuilds the levels, metrics: the first with every
container's cgroup metrics moving every report, as a collector's do;
all-metrics: every flow and the metrics);
``--profile`` prints where it goes (cProfile, sorted by cumulative time).

    .venv/bin/python bench/builder_round.py [--hosts 250] [--containers 5000]
        [--edges 25000] [--rounds 4] [--steps 4] [--level container] [--profile]

``bench/fleet_scale.py`` measures the same goal with everything running
together (issue 17: < 0.5 s of CPU per round when ~5 % of flows change, < 1 s
when all do); this one shows the builder's own share, repeatably.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import advance_metrics, make_world, traffic, world_size_arguments  # noqa: E402

from collector.reporter import HostReport, RedisReporter, redis_client  # noqa: E402
from collector.schema import (  # noqa: E402
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import RedisServer  # noqa: E402


def report_round(reporters, world, addrs, share: float, rng,
                 metrics: bool = False) -> set[str]:
    """Every host reports once; the flows drawn (``share`` of them) get
    traffic; with ``metrics`` every container's metrics move."""
    for h, reporter in reporters.items():
        deltas = traffic(world.flows[h], share, rng)
        if metrics:
            advance_metrics(world.containers[h], rng)
        reporter.report(HostReport(
            host=HostRecord(id=h, hostname=h, mode="ebpf"),
            containers=world.containers[h], addrs=addrs[h], flows=deltas))
    return set(reporters)


@contextlib.contextmanager
def fleet_on_redis(hosts: int, containers: int, edges: int):
    """Django set up and a throwaway Redis holding ``written_world``'s world,
    for the benches of the builder, the analyzer and the web tier:
    ``(url, world, reporters, addrs)``. The Redis stops on leaving."""
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    server = RedisServer()
    server.start()
    try:
        yield (server.url, *written_world(server.url, hosts, containers, edges))
    finally:
        server.stop()


def written_world(url: str, hosts: int, containers: int, edges: int):
    """``synthetic_world``'s world, a real ``RedisReporter`` per host writing
    to ``url``, and each host's address index: ``(world, reporters, addrs)``."""
    world = make_world(hosts, containers, edges)
    reporters = {h: RedisReporter(redis_client(url), Keys("portolan"))
                 for h in world.containers}
    addrs = {h: {r.ips[0]: container_node_id(h, r.id)
                 for r in world.containers[h]} for h in world.containers}
    return world, reporters, addrs


def publish_verdict(client, nodes: list[str], round_no: int) -> None:
    """What the analyzer publishes each step, for ``nodes`` in trouble: a
    warning whose reason quotes a value that moves (as "memory near its
    limit: 93 % of 256 MiB" does), and the likely cause among them."""
    from webapp.anomalies.keys import AnalysisKeys

    keys = AnalysisKeys("portolan")
    statuses = {n: json.dumps({"status": "warning", "reasons": [
        f"memory near its limit: {90 + (i + round_no) % 9} % of 256 MiB"]})
        for i, n in enumerate(nodes)}
    causes = [{"target": nodes[0], "rank": 1, "name": "x", "reasons": ["r"],
               "explains": nodes[1:4]}] if nodes else []
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.status)
    if statuses:
        pipe.hset(keys.status, mapping=statuses)
    pipe.set(keys.causes, json.dumps({"ts": time.time(), "causes": causes}))
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 250, 5_000, 25_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="builder steps a round")
    parser.add_argument("--level", default="container")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--red", type=float, default=0.01,
                        help="share of containers the analyzer warns about in "
                             "the third phase, their reasons changing each round")
    parser.add_argument("--phases", default="typical,all,analyzer")
    parser.add_argument("--python-gc", action="store_true",
                        help="leave Python's automatic garbage collection on "
                             "(the builder before webapp/round_collector.py)")
    parser.add_argument("--young-every", type=float, default=None,
                        help="seconds (rounds) between young garbage collections "
                             "when no round built a graph (default: the builder's); "
                             "0: after every round")
    parser.add_argument("--metric-nodes", type=float, default=None,
                        help="nodes whose metrics alone moved redrawn per second "
                             "at most (default: the builder's); 0: all, every round")
    args = parser.parse_args()

    with fleet_on_redis(args.hosts, args.containers, args.edges) as (
            url, world, reporters, addrs):
        from webapp.builder.builder import (
            YOUNG_COLLECTION_S,
            BuilderSettings,
            GraphBuilder,
        )
        from webapp.builder.keys import GraphKeys
        from webapp.builder.stored import mark_watched

        rng = random.Random(1)
        client = redis_client(url)
        # Hosts stay live and never count as silent however slow a round is
        # here (a silent host would rebuild every level).
        conf = BuilderSettings(node_ttl=3600, collector_ttl=3600)
        if args.metric_nodes is not None:
            conf.metric_nodes_per_s = args.metric_nodes
        builder = GraphBuilder(client, conf)
        mark_watched(client, GraphKeys(), args.level, ttl=3600)
        # The builder's young collections come every few seconds of rounds
        # (round_collector.py); here a round stands for one second of reports
        # whatever it takes to write them, so the collector's clock is the
        # rounds' (``--young-every 0``: after every round, as before).
        rounds_clock = [0.0]
        builder.collector.clock = lambda: rounds_clock[0]
        builder.collector.young_every = (YOUNG_COLLECTION_S if args.young_every is None
                                         else args.young_every)
        if not args.python_gc:  # as manage.py builder does
            builder.collector.take_over()
        report_round(reporters, world, addrs, 1.0, rng)
        t0 = time.process_time()
        builder.step(set(world.containers), now=rounds_clock[0])
        print(f"first build and store: {time.process_time() - t0:.2f} s CPU")
        profile = cProfile.Profile() if args.profile else None
        phases = {"typical": ("~5 % of flows change", 0.05, False),
                  "all": ("every flow", 1.0, False),
                  "analyzer": (f"~5 % of flows change, an analyzer warning about "
                               f"{args.red:.0%} of containers", 0.05, True),
                  "churn": ("~5 % of flows change, one new flow a round (a new "
                            "client: the levels are rebuilt)", 0.05, False),
                  "metrics": ("~5 % of flows change, every container's metrics "
                              "move", 0.05, False),
                  "all-metrics": ("every flow and every container's metrics "
                                  "change", 1.0, False)}
        warned = sorted(n for h in world.containers for n in addrs[h].values()
                        if rng.random() < args.red)
        for key in args.phases.split(","):
            phase, share, analyzer = phases[key]
            if analyzer:
                publish_verdict(client, warned, 0)
            moving = key in ("metrics", "all-metrics")
            # settles the rates
            report_round(reporters, world, addrs, share, rng, moving)
            builder.step(set(world.containers), now=rounds_clock[0])
            full_before = builder.full_builds
            cpu, wall, snapshots, marks, lags = [], [], 0, [], []
            for round_no in range(args.rounds):
                if analyzer:
                    publish_verdict(client, warned, round_no + 1)
                if key == "churn":  # a flow the host has not reported yet
                    host = sorted(world.flows)[round_no % len(world.flows)]
                    new = FlowKey(next(iter(addrs[host].values())), "in",
                                  f"198.51.100.{round_no % 250 + 1}", 8443)
                    world.flows[host].append((new, 1))
                    reporters[host].report(HostReport(
                        host=HostRecord(id=host, hostname=host, mode="ebpf"),
                        containers=world.containers[host], addrs=addrs[host],
                        flows=Counter({(new, "connections"): 1})))
                hosts = sorted(report_round(reporters, world, addrs, share, rng,
                                            moving))
                rounds_clock[0] += 1.0
                batches = [hosts[i::args.steps] for i in range(args.steps)]
                stored_at = builder.stored[args.level].snapshot_at
                c0, w0 = time.process_time(), time.perf_counter()
                if profile:
                    profile.enable()
                for i, batch in enumerate(batches):
                    # A round is one second of reports, on the rounds' clock.
                    builder.step(set(batch), now=rounds_clock[0] + i / args.steps)
                if profile:
                    profile.disable()
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                stored = builder.stored[args.level].snapshot_at != stored_at
                snapshots += stored
                marks.append("*" if stored else "")
                lags.append(builder.metrics_lag(rounds_clock[0] + 1.0))
            rounds = " ".join(f"{c:.3f}{m}"
                              for c, m in zip(cpu, marks, strict=True))
            plain = sorted(c for c, m in zip(cpu, marks, strict=True) if not m)
            print(f"[{phase}] builder CPU per round (*: stored a snapshot): "
                  f"{rounds} s (median "
                  f"{sorted(cpu)[len(cpu) // 2]:.3f}); wall "
                  f"{sorted(wall)[len(wall) // 2]:.3f} s; rounds that stored a "
                  f"snapshot {snapshots}/{args.rounds}; median without one "
                  f"{f'{plain[len(plain) // 2]:.3f} s' if plain else 'none'}; "
                  f"mean {statistics.fmean(cpu):.3f} s (the goal's work per "
                  "second of updates, the snapshots' share included); full "
                  f"rebuilds {builder.full_builds - full_before}; moved metrics "
                  f"waiting to be drawn at most {max(lags):.2f} s, "
                  f"{len(builder.metrics_due)} nodes at the end")
            gkeys = GraphKeys()
            snap_b = client.memory_usage(gkeys.snapshot(args.level), samples=0) or 0
            diffs_b = client.memory_usage(gkeys.diffs(args.level), samples=0) or 0
            entries = client.llen(gkeys.diffs(args.level))
            print(f"    stored level in Redis: snapshot {snap_b / 1e6:.1f} MB, "
                  f"diffs {diffs_b / 1e6:.1f} MB ({entries} entries): "
                  f"{(snap_b + diffs_b) / args.containers:.0f} B per container")
            if profile:
                pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
                profile = cProfile.Profile()


if __name__ == "__main__":
    main()
