"""The analyzer's CPU per step at fleet scale, alone (no builder, no web tier).

Writes ``synthetic_world``'s world into a throwaway Redis through real
``RedisReporter``s, then, step after step, lets every host report (~5 % of
its flows with traffic) and runs ``Analyzer.step``: reading the fleet,
building the service and container graphs, every rule, remembering the step,
publishing. Prints each step's CPU and wall time, and the median's ratio to
the analyzer's interval (it steps once a second: a step that takes longer
makes every status that much older).

    .venv/bin/python bench/analyzer_step.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--steps 6] [--profile] [--metrics]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from builder_round import fleet_on_redis, report_round  # noqa: E402
from synthetic_world import world_size_arguments  # noqa: E402

from collector.reporter import redis_client  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--python-gc", action="store_true",
                        help="leave Python's automatic garbage collection on "
                             "(manage.py analyze collects between steps)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the last step (cumulative time)")
    parser.add_argument("--metrics", action="store_true",
                        help="every container's cgroup metrics move every "
                             "report, as a collector's do")
    args = parser.parse_args()

    with fleet_on_redis(args.hosts, args.containers, args.edges) as (
            url, world, reporters, addrs):
        from webapp.anomalies.analyzer import Analyzer

        rng = random.Random(1)
        analyzer = Analyzer(redis_client(url), "portolan")
        if not args.python_gc and hasattr(analyzer, "collector"):
            analyzer.collector.take_over()
        report_round(reporters, world, addrs, 1.0, rng)
        cpu = []
        profile = cProfile.Profile() if args.profile else None
        for i in range(args.steps):
            report_round(reporters, world, addrs, 0.05, rng, args.metrics)
            last = profile is not None and i == args.steps - 1
            c0, w0 = time.process_time(), time.perf_counter()
            if last:
                profile.enable()
            analysis = analyzer.step()
            if hasattr(analyzer, "collector"):
                analyzer.collector.after_round()  # as Analyzer.run does
            if last:
                profile.disable()
            cpu.append(time.process_time() - c0)
            print(f"step {i}: {cpu[-1]:.3f} s CPU, {time.perf_counter() - w0:.3f} s "
                  f"wall, {len(analysis.findings)} findings")
        median = statistics.median(cpu[1:] or cpu)  # the first learns the fleet
        interval = analyzer.config.interval
        print(f"{args.hosts} hosts, {args.containers} containers, {args.edges} "
              f"flows: median step {median:.3f} s CPU ({median / interval:.2f}x "
              f"the {interval:.0f} s interval); peak RSS of this process "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
              "(the world and its writers included)")
        if profile:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
