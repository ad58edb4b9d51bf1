"""The details panel's API (``/api/node/``) at fleet scale: a web worker's CPU
for one answer, from the graph builder's stored level and built from the
records, side by side.

Writes ``synthetic_world``'s world into a throwaway Redis through real
``RedisReporter``s, lets a ``GraphBuilder`` store every level, then asks
``service.node_details`` (what the view calls) about container nodes, first
while the stored level is fresh, then with its fresh mark removed (the
web worker reads every host and builds the graph, as it did for every
request before). An open panel asks every 2 s (``frontend/src/ui.js``).

    .venv/bin/python bench/node_api.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--requests 5]
"""

from __future__ import annotations

import argparse
import random
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
from collector.schema import container_node_id  # noqa: E402

PANEL_EVERY_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()

    with fleet_on_redis(args.hosts, args.containers, args.edges) as (
            url, world, reporters, addrs):
        from django.conf import settings

        from webapp.builder.builder import BuilderSettings, GraphBuilder
        from webapp.builder.keys import GraphKeys
        from webapp.topology import service

        try:
            rng = random.Random(1)
            report_round(reporters, world, addrs, 0.05, rng, True)
            client = redis_client(url)
            settings.REDIS_URL = url
            service.redis_client.cache_clear()
            builder = GraphBuilder(client, BuilderSettings(
                node_ttl=3600, collector_ttl=3600, all_levels=True,
                fresh_ttl=3600))
            builder.step(set(world.containers))
            nodes = [container_node_id(h, r.id) for h in sorted(world.containers)
                     for r in world.containers[h]]
            asked = rng.sample(nodes, args.requests)
            fresh = GraphKeys().fresh("container")
            mark = client.get(fresh)

            def answers() -> list[float]:
                cpu = []
                for node_id in asked:
                    c0 = time.process_time()
                    body = service.node_details(node_id)
                    cpu.append(time.process_time() - c0)
                    assert body["node"]["id"] == node_id
                return cpu

            answers()  # this process's copy of the stored level: read once
            stored = answers()
            client.delete(fresh)
            built = answers()
            client.set(fresh, mark)
            s, b = statistics.median(stored), statistics.median(built)
            print(f"{args.hosts} hosts, {args.containers} containers, {args.edges} "
                  f"flows: /api/node/ CPU a request, median of {args.requests}: "
                  f"stored level {s * 1000:.1f} ms, built from the records "
                  f"{b * 1000:.0f} ms ({b / s:.0f}x); one open panel "
                  f"(a request every {PANEL_EVERY_S:.0f} s) costs a web worker "
                  f"{s / PANEL_EVERY_S:.1%} against {b / PANEL_EVERY_S:.0%} of a core")
        finally:
            service.redis_client.cache_clear()


if __name__ == "__main__":
    main()
