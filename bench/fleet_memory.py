"""Redis memory per container of the fleet benchmark's world, by key kind.

The hosts of ``synthetic_world`` (500 hosts, 10,000 containers, 50,000 flows by
default) report every flow through real ``RedisReporter``s, ``--rounds`` times
5 s apart (one fine history snapshot each), into a fresh redis-server; then
``MEMORY USAGE`` of every key, summed by kind, per container.

    .venv/bin/python bench/fleet_memory.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--rounds 3] [--hash-entries 1024] [--full-records]

``--hash-entries N`` sets ``hash-max-listpack-entries N`` and
``hash-max-listpack-value 128`` on that Redis first; ``--full-records`` stores
records with every field spelled out (as before they were compacted), for a
side-by-side figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import make_world, world_size_arguments  # noqa: E402

from collector import schema  # noqa: E402
from collector.reporter import HostReport, RedisReporter, redis_client  # noqa: E402
from collector.schema import HostRecord, Keys, container_node_id  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402

GOAL = 7000  # issue 17: Redis memory per container <= 7 kB
HOUR_OF_FINE = 3600 / 5  # fine snapshots in an hour of 5-s steps
HOUR_OF_COARSE = 3600 / 60


def print_split(kinds: dict, containers: int, rounds: int) -> None:
    """Live state and history per container, each against the goal, and the
    history an hour of retention would take at the keys' measured sizes."""
    def size(kind):
        return kinds.get(kind, [0, 0])[1] / containers

    history = {k: size(k) for k in kinds if k.startswith("history")}
    live = sum(size(k) for k in kinds) - sum(history.values())
    print(f"live state {live:.0f} B per container ({live / GOAL:.2f}x of "
          f"{GOAL} B); history now {sum(history.values()):.0f} B "
          f"({sum(history.values()) / GOAL:.2f}x)")
    # The first round writes one coarse snapshot and one keyframe; every
    # round a fine one.
    fine = history.get("history:fine", 0) / rounds
    coarse = history.get("history:coarse", 0)
    hour = fine * HOUR_OF_FINE + coarse * HOUR_OF_COARSE
    default = fine * HOUR_OF_FINE / 4 + coarse * HOUR_OF_COARSE
    print(f"history per hour kept (5-s fine, 60-s coarse, estimated from "
          f"{fine:.0f} B a fine and {coarse:.0f} B a coarse snapshot): "
          f"{hour:.0f} B per container ({hour / GOAL:.2f}x); the default 15 "
          f"min fine + 1 h coarse: {default:.0f} B ({default / GOAL:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hash-entries", type=int)
    parser.add_argument("--full-records", action="store_true")
    args = parser.parse_args()
    if args.full_records:
        def spelled_out(record):
            return json.dumps(schema.plain_fields(record), sort_keys=True)
        schema.ContainerRecord.to_json = spelled_out
        schema.HostRecord.to_json = spelled_out
    server = RedisServer()
    server.start()
    try:
        client = redis_client(server.url)
        if args.hash_entries:
            client.config_set("hash-max-listpack-entries", args.hash_entries)
            client.config_set("hash-max-listpack-value", 128)
        world = make_world(args.hosts, args.containers, args.edges)
        reporters = {h: RedisReporter(redis_client(server.url), Keys("portolan"))
                     for h in world.containers}
        rng = random.Random(1)
        start = time.time() - 5 * args.rounds
        for i in range(args.rounds):
            for h, records in world.containers.items():
                flows: Counter = Counter()
                for key, weight in world.flows[h]:
                    flows[(key, "connections")] += weight + 1
                    flows[(key, "bytes_sent")] += rng.randint(100, 5000)
                    flows[(key, "bytes_received")] += rng.randint(100, 50000)
                reporters[h].report(HostReport(
                    host=HostRecord(id=h, hostname=h, mode="ebpf"),
                    containers=records,
                    addrs={r.ips[0]: container_node_id(h, r.id) for r in records},
                    flows=flows), now=start + 5 * i)
        kinds: dict[str, list] = {}
        for key in client.scan_iter(count=1000):
            parts = key.decode().split(":")
            kind = parts[1] + (":" + parts[-1] if parts[1] == "history" else "")
            entry = kinds.setdefault(kind, [0, 0, set()])
            entry[0] += 1
            entry[1] += client.memory_usage(key, samples=0) or 0
            entry[2].add(client.object("encoding", key).decode())
        n = args.containers
        print(f"{args.hosts} hosts, {n} containers, {args.edges} flows, "
              f"{args.rounds} rounds; hash-max-listpack-entries "
              f"{client.config_get('hash-max-listpack-*')}; records "
              f"{'spelled out' if args.full_records else 'compact'}")
        used = client.info("memory")["used_memory"]
        print(f"used_memory per container {used / n:.0f} B")
        for kind, (keys, size, encodings) in sorted(kinds.items(),
                                                     key=lambda kv: -kv[1][1]):
            print(f"  {kind:16s} {keys:6d} keys {size / n:8.0f} B per container "
                  f"({', '.join(sorted(encodings))})")
        print_split(kinds, n, args.rounds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
