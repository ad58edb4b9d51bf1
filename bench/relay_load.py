"""A relay's cold load of a fleet's stored level, step by step.

A relay whose first socket opens (or that missed a diff) reads the builder's
stored snapshot and the diffs since, and packs them into the frames its
sockets send (``webapp.maps.relay``: the snapshot's parts are sent as they
are packed). This writes ``synthetic_world``'s world into a throwaway Redis
through real ``RedisReporter``s, lets a ``GraphBuilder`` store the container
level and run ``--rounds`` typical rounds (metrics moving) so that diffs
pile up after the snapshot, then times each step of the load: reading
Redis, decoding the snapshot and the diffs (zstd), and packing each into
frames (zlib), the snapshot's parts separately from the diffs'.

    .venv/bin/python bench/relay_load.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--rounds 6] [--loads 3]
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

from builder_round import fleet_on_redis, report_round  # noqa: E402
from synthetic_world import world_size_arguments  # noqa: E402

from collector.reporter import redis_client  # noqa: E402

LEVEL = "container"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--rounds", type=int, default=6,
                        help="typical rounds after the first build")
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()

    with fleet_on_redis(args.hosts, args.containers, args.edges) as (
            url, world, reporters, addrs):
        from webapp.builder.builder import BuilderSettings, GraphBuilder
        from webapp.builder.keys import GraphKeys, decode_entry, decode_snapshot_blob
        from webapp.builder.stored import mark_watched
        from webapp.maps.frames import pack_frame

        client = redis_client(url)
        gkeys = GraphKeys("portolan")
        mark_watched(client, gkeys, LEVEL)
        builder = GraphBuilder(client, BuilderSettings())
        builder.step(set(world.containers))
        rng = random.Random(1)
        for _ in range(args.rounds):
            report_round(reporters, world, addrs, 0.05, rng, True)
            builder.step(set(world.containers))
        print(f"{args.hosts} hosts, {args.containers} containers, {args.edges} "
              f"flows; the {LEVEL} level after {args.rounds} typical rounds "
              "with metrics moving")
        for _ in range(args.loads):
            t0 = time.perf_counter()
            pipe = client.pipeline(transaction=True)
            pipe.get(gkeys.snapshot(LEVEL))
            pipe.lrange(gkeys.diffs(LEVEL), 0, -1)
            blob, entries = pipe.execute()
            t1 = time.perf_counter()
            seq, texts = decode_snapshot_blob(blob)
            t2 = time.perf_counter()
            diffs = [d for d in map(decode_entry, entries) if d[0] > seq]
            t3 = time.perf_counter()
            for text in texts:
                pack_frame(text)
            t4 = time.perf_counter()
            for _, diff_texts in diffs:
                for text in diff_texts:
                    pack_frame(text)
            t5 = time.perf_counter()
            snapshot_mb = sum(map(len, texts)) / 1e6
            diffs_mb = sum(len(t) for _, d in diffs for t in d) / 1e6
            print(f"  Redis {1000 * (t1 - t0):.0f} ms ({len(blob) / 1e6:.1f} MB "
                  f"stored snapshot, {len(entries)} diffs stored); decoding the "
                  f"snapshot {1000 * (t2 - t1):.0f} ms ({snapshot_mb:.1f} MB of "
                  f"JSON in {len(texts)} parts), the diffs since "
                  f"{1000 * (t3 - t2):.0f} ms ({len(diffs)}, {diffs_mb:.1f} MB); "
                  f"packing the snapshot {1000 * (t4 - t3):.0f} ms "
                  f"({1000 * (t4 - t3) / max(snapshot_mb, 1e-9):.1f} ms a MB), "
                  f"the diffs {1000 * (t5 - t4):.0f} ms")


if __name__ == "__main__":
    main()
