"""A synthetic world as a capture file: any number of hosts, containers,
services, edges and faults, over any span, in the format `manage.py replay`
reads (docs/capture-format.md). Scale tests of the graph and the map replay
it instead of hand-built Redis keys:

    .venv/bin/python bench/capture_world.py -w /tmp/world.capture --hosts 3 \\
        --containers 50 --services 10 --edges 200 --faults 2 --duration 600

Builds on bench/synthetic_world.py's tiers (APPS, PORTS: flows mostly towards
the next tier). Faults start halfway: the first, third... make a
container's callers fail (refused connects), the second, fourth... crash-loop
a container.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic_world import APPS, PORTS  # noqa: E402
from collector.capture.format import CaptureWriter, Header, Report  # noqa: E402
from collector.schema import (  # noqa: E402
    RATE_COUNTERS,
    ContainerRecord,
    FlowKey,
    HostRecord,
    container_node_id,
    make_flow_field,
)

__all__ = ["WorldSpec", "generate", "world_reports"]


@dataclass(slots=True)
class WorldSpec:
    hosts: int = 3
    containers: int = 10  # per host
    services: int = 10  # distinct apps (at most len(APPS))
    edges: int = 30  # per host
    faults: int = 1
    duration: float = 300.0  # seconds
    interval: float = 1.0
    start: float = 1_750_000_000.0
    history_step: float = 5.0
    coarse_step: float = 60.0
    seed: int = 1
    hosts_prefix: str = "node"
    extra: dict = field(default_factory=dict)


@dataclass(slots=True)
class _Flow:
    host: str
    key: FlowKey
    weight: int
    target: ContainerRecord
    server_host: str


def _world(spec: WorldSpec, rng: random.Random):
    apps = APPS[: max(1, min(spec.services, len(APPS)))]
    records: dict[str, list[ContainerRecord]] = {}
    by_app: dict[str, list[tuple[str, ContainerRecord]]] = {a: [] for a in apps}
    for h in range(spec.hosts):
        host = f"{spec.hosts_prefix}{h:03d}"
        records[host] = []
        for c in range(spec.containers):
            n = h * spec.containers + c
            app = apps[n % len(apps)]
            rec = ContainerRecord(
                id=f"{n:064x}", name=f"{app}-{h}-{c}", image=f"acme/{app}:1",
                state="running", host=host,
                ips=[f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"],
                ports=[PORTS[app]], labels={"app": app,
                                            "com.docker.compose.project": "shop"},
                compose_project="shop", compose_service=app,
                metrics={"cpu_percent": 1.0, "memory_bytes": 50 << 20,
                         "memory_limit_bytes": 512 << 20},
            )
            records[host].append(rec)
            by_app[app].append((host, rec))
    flows: list[_Flow] = []
    for host, recs in records.items():
        for _ in range(spec.edges):
            src = rng.choice(recs)
            app = src.labels["app"]
            nxt = apps[(apps.index(app) + 1) % len(apps)]
            server_host, dst = rng.choice(by_app[nxt] or by_app[app])
            flows.append(_Flow(host, FlowKey(container_node_id(host, src.id), "out",
                                             dst.ips[0], PORTS[nxt]),
                               rng.randint(1, 20), dst, server_host))
    return records, flows


def world_reports(spec: WorldSpec):
    """Every host's report of every interval, in time order."""
    rng = random.Random(spec.seed)
    records, flows = _world(spec, rng)
    everyone = [r for recs in records.values() for r in recs]
    faulty = [id(r) for r in rng.sample(everyone, min(spec.faults, len(everyone)))]
    failing = set(faulty[0::2])  # its callers are refused
    crashing = set(faulty[1::2])
    steps = max(1, int(spec.duration / spec.interval))
    next_fine = {h: 0.0 for h in records}
    next_coarse = dict(next_fine)
    for step in range(steps):
        ts = spec.start + step * spec.interval
        late = step >= steps // 2
        for host, recs in records.items():
            containers = []
            for rec in recs:
                if id(rec) in crashing and late:
                    down = step % 6 < 3
                    containers.append(ContainerRecord(**{
                        **{n: getattr(rec, n) for n in rec.__slots__},
                        "state": "restarting" if down else "running",
                        "exit_code": 1 if down else 0}))
                else:
                    containers.append(rec)
            deltas: dict[str, int] = {}
            for flow in flows:
                if flow.host != host:
                    continue
                n = max(0, flow.weight + rng.randint(-2, 2))
                fails = late and id(flow.target) in failing
                counts = ({"failed": n, "failed_refused": n} if fails else {
                    "connections": n, "bytes_sent": n * rng.randint(200, 2000),
                    "bytes_received": n * rng.randint(500, 20000),
                    "connect_latency_us_sum": n * rng.randint(100, 900),
                    "connect_latency_count": n})
                for counter, value in counts.items():
                    if value:
                        name = make_flow_field(flow.key, counter)
                        deltas[name] = deltas.get(name, 0) + value
            history = []
            if ts >= next_fine[host]:
                history.append("fine")
                next_fine[host] = ts + spec.history_step
            if ts >= next_coarse[host]:
                history = ["fine", "coarse"]  # a coarse step is a fine one too
                next_coarse[host] = ts + spec.coarse_step
                if step % int(600 / spec.interval) == 0:
                    history.append("totals")  # a keyframe every 10 min
            yield Report(
                ts=ts, host=HostRecord(id=host, hostname=host, mode="ebpf",
                                       kernel="6.1.0-synthetic"),
                containers=containers,
                addrs={r.ips[0]: container_node_id(host, r.id) for r in recs},
                flows=deltas,
                rates={f: round(v / spec.interval, 3) for f, v in deltas.items()
                       if f.rpartition("\t")[2] in RATE_COUNTERS},
                interval=spec.interval, history=tuple(history))


def generate(path, spec: WorldSpec) -> int:
    """Write the world into a new capture file; returns the records written."""
    with CaptureWriter(path, Header(
            hosts=[f"{spec.hosts_prefix}{h:03d}" for h in range(spec.hosts)],
            created=spec.start, source="synthetic",
            notes={"generator": "bench/capture_world.py"})) as writer:
        for report in world_reports(spec):
            writer.write(report)
    return writer.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--write", required=True, metavar="FILE")
    for name, default in (("hosts", 3), ("containers", 10), ("services", 10),
                          ("edges", 30), ("faults", 1), ("seed", 1)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    spec = WorldSpec(hosts=args.hosts, containers=args.containers,
                     services=args.services, edges=args.edges, faults=args.faults,
                     duration=args.duration, interval=args.interval, seed=args.seed)
    n = generate(args.write, spec)
    size = Path(args.write).stat().st_size
    print(f"{args.write}: {n} reports, {args.hosts} hosts x {args.containers} "
          f"containers, {size} bytes")


if __name__ == "__main__":
    main()
