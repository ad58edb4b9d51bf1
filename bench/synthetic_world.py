"""A synthetic world in Redis: N hosts, their containers and flows between them.

Written through the collector's real RedisReporter and HostReport (as
bench/graph_scale.py does), so the web tier reads exactly what collectors
produce. Used by bench/map_render.py; also runnable on its own against a Redis:

    .venv/bin/python bench/synthetic_world.py --redis redis://127.0.0.1:6379/0 \\
        [--hosts 50] [--containers 2000] [--edges 4000] [--prefix portolan]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.reporter import HostReport, RedisReporter, redis_client  # noqa: E402
from collector.schema import (  # noqa: E402
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)

__all__ = ["World", "make_world", "write_world"]

APPS = ("web", "api", "auth", "cart", "search", "db", "cache", "queue", "worker",
        "cron")
PORTS = {"web": 80, "api": 8080, "auth": 9000, "cart": 8081, "search": 9200,
         "db": 5432, "cache": 6379, "queue": 5672, "worker": 8000, "cron": 8001}


@dataclass
class World:
    containers: dict[str, list[ContainerRecord]]  # host id -> records
    flows: dict[str, list[tuple[FlowKey, int]]]  # host id -> (flow, rate weight)


def make_world(hosts: int, containers: int, edges: int, seed: int = 1) -> World:
    """Hosts (labelled with a region and zone) with containers on an overlay
    network, Compose projects, Kubernetes namespaces, and flows mostly towards
    the next tier."""
    rng = random.Random(seed)
    per_host = max(1, containers // hosts)
    records: dict[str, list[ContainerRecord]] = {}
    everyone: list[tuple[str, ContainerRecord, str]] = []
    for h in range(hosts):
        host = f"node{h:03d}"
        records[host] = []
        for c in range(per_host):
            n = h * per_host + c
            app = APPS[n % len(APPS)]
            project = f"shop{n % 7}"
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            state, exit_code = "running", 0
            if rng.random() < 0.01:
                state, exit_code = "exited", 1
            rec = ContainerRecord(
                # Docker's ids are random 64 hex digits (their 12-digit short
                # ids differ: collector/flow_fields.py relies on it).
                id=hashlib.sha256(str(n).encode()).hexdigest(),
                name=f"{project}-{app}-{c}",
                image=f"acme/{app}:1.{n % 3}",
                state=state, exit_code=exit_code, ips=[ip], ports=[PORTS[app]],
                labels={"com.docker.compose.project": project,
                        "io.kubernetes.pod.namespace": f"ns{n % 4}", "app": app},
            )
            records[host].append(rec)
            everyone.append((host, rec, app))
    flows: dict[str, list[tuple[FlowKey, int]]] = {host: [] for host in records}
    for _ in range(edges):
        src_host, _src, app = rng.choice(everyone)
        src = _src
        nxt = APPS[(APPS.index(app) + 1) % len(APPS)]
        candidates = [e for e in rng.sample(everyone, 20) if e[2] == nxt]
        _, dst, dst_app = candidates[0] if candidates else rng.choice(everyone)
        key = FlowKey(container_node_id(src_host, src.id), "out", dst.ips[0],
                      PORTS[dst_app])
        flows[src_host].append((key, rng.randint(0, 20)))
    return World(records, flows)


def traffic(flows, share: float, rng) -> Counter:
    """One second's deltas of a host's ``flows`` ((key, weight) pairs): each
    flow gets traffic with probability ``share``, as the benchmarks' writers
    report it."""
    deltas: Counter = Counter()
    for key, weight in flows:
        if rng.random() < share:
            deltas[(key, "connections")] += weight + 1
            deltas[(key, "bytes_sent")] += rng.randint(100, 5000)
            deltas[(key, "bytes_received")] += rng.randint(100, 50000)
    return deltas


def host_labels(host: str) -> dict[str, str]:
    """A region (of 4) and zone (of 3) per host, as PORTOLAN_HOST_LABELS sets.

    >>> host_labels("node005")
    {'region': 'eu-2', 'zone': 'b'}
    """
    n = int(host.removeprefix("node"))
    return {"region": f"eu-{n % 4 + 1}", "zone": "abc"[n // 4 % 3]}


def write_world(world: World, url: str, prefix: str = "portolan",
                interval: float = 1.0, rng_seed: int = 2,
                node_ttl: float = 30.0) -> int:
    """One report per host (one interval of traffic); returns flows written.
    ``node_ttl``: how long the hosts stay on the map without another report."""
    rng = random.Random(rng_seed)
    written = 0
    for host, recs in world.containers.items():
        reporter = RedisReporter(redis_client(url), Keys(prefix), node_ttl=node_ttl)
        deltas: Counter = Counter()
        for key, weight in world.flows[host]:
            deltas[(key, "connections")] += weight
            deltas[(key, "bytes_sent")] += weight * rng.randint(100, 5000)
            deltas[(key, "bytes_received")] += weight * rng.randint(100, 50000)
            if rng.random() < 0.02:
                deltas[(key, "failed")] += 1
                deltas[(key, "failed_refused")] += 1
        reporter.report(
            HostReport(
                host=HostRecord(id=host, hostname=host, mode="ebpf",
                                labels=host_labels(host)),
                containers=recs,
                addrs={r.ips[0]: container_node_id(host, r.id) for r in recs},
                flows=deltas,
                interval=interval,
            )
        )
        reporter.client.close()
        written += len(world.flows[host])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--containers", type=int, default=2000)
    parser.add_argument("--edges", type=int, default=4000)
    parser.add_argument("--prefix", default="portolan")
    args = parser.parse_args()
    world = make_world(args.hosts, args.containers, args.edges)
    n = write_world(world, args.redis, args.prefix)
    print(f"wrote {args.hosts} hosts, {sum(map(len, world.containers.values()))} "
          f"containers, {n} flows")


if __name__ == "__main__":
    main()
