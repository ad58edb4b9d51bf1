"""Graph scale: 100 hosts, 5,000 containers, 20,000 edges in a real Redis.

Every host's collector reports once a second through RedisReporter (as the real
collectors do); the web tier reads the state back and builds each zoom level,
then computes one second's changes against the previous graph.

    .venv/bin/python bench/graph_scale.py [--hosts 100] [--containers 5000]
                                          [--edges 20000] [--seconds 5]

Goals (issue 5): build each level under 1 s, one second's changes under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import networkx as nx  # noqa: E402
import redis  # noqa: E402

from collector.reporter import HostReport, RedisReporter, redis_client  # noqa: E402
from collector.schema import (  # noqa: E402
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import RedisServer  # noqa: E402
from webapp.maps.diff import graph_diff  # noqa: E402
from webapp.topology.graph import build_graph  # noqa: E402
from webapp.topology.store import read_state  # noqa: E402

KEYS = Keys("bench")


def make_world(hosts: int, containers: int, edges: int, seed: int = 1):
    """Hosts with containers on an overlay network, and random flows."""
    rng = random.Random(seed)
    per_host = containers // hosts
    world = {}
    all_containers = []
    for h in range(hosts):
        host = f"host{h:03d}"
        recs = []
        for c in range(per_host):
            n = h * per_host + c
            ip = f"10.{n // 65536}.{(n // 256) % 256}.{n % 256}"
            rec = ContainerRecord(
                id=f"{n:064x}", name=f"svc{c % 20}-{h}-{c}", image=f"img{c % 20}",
                state="running", ips=[ip], labels={"app": f"svc{c % 20}"},
                ports=[8080],
            )
            recs.append(rec)
            all_containers.append((host, rec))
        world[host] = recs
    flows = {host: [] for host in world}
    for _ in range(edges):
        src_host, src = rng.choice(all_containers)
        _, dst = rng.choice(all_containers)
        key = FlowKey(container_node_id(src_host, src.id), "out", dst.ips[0],
                      rng.choice([80, 5432, 6379, 8080]))
        flows[src_host].append(key)
    return world, flows


def one_second(reporters, world, flows, rng, now):
    for host, reporter in reporters.items():
        deltas = Counter()
        for key in flows[host]:
            deltas[(key, "connections")] += rng.randint(1, 5)
            deltas[(key, "bytes_sent")] += rng.randint(100, 5000)
            deltas[(key, "bytes_received")] += rng.randint(100, 50000)
            if rng.random() < 0.01:
                deltas[(key, "failed")] += 1
                deltas[(key, "failed_refused")] += 1
        reporter.report(
            HostReport(
                host=HostRecord(id=host, hostname=host, mode="ebpf"),
                containers=world[host],
                addrs={r.ips[0]: container_node_id(host, r.id) for r in world[host]},
                flows=deltas,
            ),
            now=now,
        )


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--edges", type=int, default=20000)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    server = RedisServer()
    server.start()
    url = server.url
    try:
        client = redis.Redis.from_url(url)
        base_memory = client.info("memory")["used_memory"]
        world, flows = make_world(args.hosts, args.containers, args.edges)
        reporters = {h: RedisReporter(redis_client(url), KEYS) for h in world}
        rng = random.Random(2)
        now = time.time()
        _, t_write = timed(one_second, reporters, world, flows, rng, now)
        memory = client.info("memory")["used_memory"] - base_memory
        build = {lvl: [] for lvl in ("service", "container", "host")}
        reads, diffs = [], []
        previous = None
        for second in range(1, args.seconds + 1):
            one_second(reporters, world, flows, rng, now + second)
            state, t_read = timed(read_state, client, KEYS, 3600.0, now + second)
            reads.append(t_read)
            graphs = {}
            for level in build:
                graphs[level], t = timed(build_graph, state, level)
                build[level].append(t)
            payload = nx.node_link_data(graphs["container"], edges="links")
            if previous is not None:
                diff, t_diff = timed(graph_diff, previous, payload)
                diffs.append(t_diff)
            previous = payload
        G = graphs["container"]
        print(f"world: {args.hosts} hosts, {args.containers} containers, "
              f"{args.edges} flows; container level {G.number_of_nodes()} nodes, "
              f"{G.number_of_edges()} edges")
        print(f"write one second of all hosts' reports: {t_write * 1000:.0f} ms")
        read_ms = statistics.median(reads) * 1000
        print(f"read state from Redis:      median {read_ms:7.1f} ms")
        for level, times in build.items():
            build_ms = statistics.median(times) * 1000
            total = read_ms + build_ms
            print(f"build {level:<9} level:     median {build_ms:7.1f} ms  "
                  f"(read+build {total:.0f} ms, goal 1000 ms, "
                  f"ratio {total / 1000:.2f})")
        diff_ms = statistics.median(diffs) * 1000
        print(f"one second's changes (diff): median {diff_ms:6.1f} ms  "
              f"(goal 100 ms, ratio {diff_ms / 100:.2f})")
        last = diff
        print(f"  changed edges in that second: {len(last.get('changed_edges', []))}")
        print(f"Redis memory: {memory / 1e6:.1f} MB in all, "
              f"{memory / args.containers / 1e3:.1f} kB per container "
              "(records, address index, flow counters, rates, history)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
