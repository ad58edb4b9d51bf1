"""/metrics scrape cost at graph_scale's world: 100 hosts, 5,000 containers,
20,000 flows in a real Redis, written through RedisReporter.

One scrape reads the state, builds the container level and renders the
exposition (what a Prometheus scrape of one web replica costs), with the
default caps and with caps high enough to export everything.

    .venv/bin/python bench/metrics_scrape.py [--hosts 100] [--containers 5000]
                                             [--edges 20000] [--scrapes 5]

Goal: a scrape well under Prometheus' default 10 s scrape timeout; the
default caps bound the series count (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from graph_scale import KEYS, make_world, one_second  # noqa: E402

from collector.reporter import RedisReporter, redis_client  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402


def scrape_figures(caps: dict, scrapes: int) -> tuple[float, int, int, str]:
    """Median seconds per scrape, bytes and series of the last one."""
    from django.conf import settings
    from prometheus_client import generate_latest

    from webapp.metrics.registry import registry

    settings.PORTOLAN_METRICS = {**settings.PORTOLAN_METRICS, **caps}
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        text = generate_latest(registry())
        times.append(time.perf_counter() - start)
    lines = [line for line in text.decode().splitlines()
             if line and not line.startswith("#")]
    dropped = [line for line in lines if line.startswith("portolan_metrics_dropped")]
    return statistics.median(times), len(text), len(lines), ", ".join(dropped)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--edges", type=int, default=20000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()

    server = RedisServer()
    server.start()
    try:
        os.environ.update(REDIS_URL=server.url, PORTOLAN_KEY_PREFIX=KEYS.prefix,
                          PORTOLAN_NODE_TTL="3600")
        import django

        django.setup()
        world, flows = make_world(args.hosts, args.containers, args.edges)
        reporters = {h: RedisReporter(redis_client(server.url), KEYS) for h in world}
        one_second(reporters, world, flows, random.Random(2), time.time())
        print(f"world: {args.hosts} hosts, {args.containers} containers, "
              f"{args.edges} flows")
        for label, caps in (
            ("default caps (2000 edges, 2000 containers)", {}),
            ("no cap (everything)", {"MAX_EDGES": 10**9, "MAX_CONTAINERS": 10**9}),
        ):
            seconds, size, series, dropped = scrape_figures(caps, args.scrapes)
            print(f"{label}: median {seconds * 1000:.0f} ms a scrape "
                  f"(goal < 10000 ms, ratio {seconds / 10:.2f}), "
                  f"{series} series, {size / 1e6:.1f} MB; {dropped}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
