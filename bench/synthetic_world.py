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


def advance_metrics(records, rng, interval: float = 1.0) -> None:
    """Give each running container the cgroup metrics a collector reports
    (``collector.container_metrics.derive_metrics``' fields), moved on by one
    report: CPU and memory wander, the cumulative counters grow. Why: a real
    record changes every report, and what history stores follows that."""
    for rec in records:
        if rec.state != "running":
            rec.metrics = {}
            continue
        m = rec.metrics or {
            "cgroup_version": 2, "cpu_limit_cores": None,
            "cpu_percent_of_limit": None, "cpu_throttled_ratio": None,
            "cpu_throttled_periods": 0, "cpu_throttled_ns": 0,
            "memory_usage_bytes": rng.randint(40, 400) << 20,
            "memory_limit_bytes": None, "memory_oom_kills": 0,
            "io_read_bytes": rng.randint(0, 1 << 30), "io_write_bytes": 0,
            "io_read_ops": rng.randint(0, 1 << 16), "io_write_ops": 0,
            "pids": rng.randint(1, 40), "pids_limit": None,
            "net_rx_bytes": rng.randint(0, 1 << 32),
            "net_tx_bytes": rng.randint(0, 1 << 32)}
        m = dict(m)
        m["cpu_cores"] = round(rng.uniform(0.0005, 0.4), 4)
        m["memory_usage_bytes"] += rng.randint(-64, 64) << 12
        m["memory_working_set_bytes"] = m["memory_usage_bytes"] - (
            rng.randint(0, 1024) << 12)
        written = rng.randint(0, 32) << 12 if rng.random() < 0.3 else 0
        m["io_write_bytes"] += written
        m["io_write_ops"] += written >> 12
        m["io_read_bytes_per_s"] = 0.0
        m["io_write_bytes_per_s"] = round(written / interval, 3)
        rx, tx = rng.randint(0, 200_000), rng.randint(0, 50_000)
        m["net_rx_bytes"] += rx
        m["net_tx_bytes"] += tx
        m["net_rx_bytes_per_s"] = round(rx / interval, 3)
        m["net_tx_bytes_per_s"] = round(tx / interval, 3)
        rec.metrics = m


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


def world_size_arguments(parser, hosts: int, containers: int, edges: int) -> None:
    """``--hosts``, ``--containers`` and ``--edges`` of a bench's world, with
    its defaults (the fleet's 500 / 10,000 / 50,000 for issue 17's goals)."""
    parser.add_argument("--hosts", type=int, default=hosts)
    parser.add_argument("--containers", type=int, default=containers)
    parser.add_argument("--edges", type=int, default=edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    world_size_arguments(parser, 50, 2000, 4000)
    parser.add_argument("--prefix", default="portolan")
    args = parser.parse_args()
    world = make_world(args.hosts, args.containers, args.edges)
    n = write_world(world, args.redis, args.prefix)
    print(f"wrote {args.hosts} hosts, {sum(map(len, world.containers.values()))} "
          f"containers, {n} flows")


if __name__ == "__main__":
    main()
