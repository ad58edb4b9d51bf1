"""Fleet scale: 500 collectors, 10,000 containers, 50,000 edges, one graph builder.

Simulated collectors (real ``RedisReporter``s writing ``synthetic_world``'s
world, in two writer processes) report every second; ``manage.py builder`` and
one Daphne worker run as processes; 50 WebSocket clients hold the container
map open on that worker. A probe host reports a counter every 0.5 s, and one
client times each report to the diff that carries it. Measured on one Redis and
on a three-master Redis Cluster (the Channels layer on its own Redis).

    .venv/bin/python bench/fleet_scale.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--sockets 50] [--seconds 12] [--backends single]
        [--phases typical,all] [--orders publish-first,store-first]
        [--redis shipped|stock] [--metrics]

The default run (one Redis) takes about 3-4 minutes; ``--backends
single,cluster`` adds the three-master cluster (about as long again). Only the
first socket decodes what it receives (to time the probe): the others count
messages, so the clients' own JSON parsing is not what is measured.

Goals (issue 17): builder CPU per second of updates < 0.5 s when ~5 % of flows
change and < 1 s when all do; report -> diff p95 < 2 s; Redis memory per
container <= 7 kB; the Daphne worker relaying to 50 sockets < 10 % of a core.

Where a report's wait goes: the builder writes each round's stage times
(``manage.py builder --timings``), and each probe sample is split by the round
whose diffs were published last before the timing socket received it: the wait
for that round to start (the rest of the round in progress and the pause after
it), its update, its publish (after its store, with ``--store-first``) and the
relay to the socket. ``--orders`` measures each phase once per builder order
given (``store-first``: as builders before; the builder is restarted between
them, a standby's takeover), in the same run, for side-by-side ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import advance_metrics, make_world, traffic, world_size_arguments  # noqa: E402

from collector.reporter import HostReport, RedisReporter, redis_client  # noqa: E402
from collector.schema import (  # noqa: E402
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
)
from tests.conftest import (  # noqa: E402
    SHIPPED_REDIS_CONF,
    RedisClusterServers,
    RedisServer,
    free_port,
)
from tests.integration.test_builder import close_map, open_map  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PROBE = "probe-host"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ------------------------------------------------------------ collectors


def writer(url: str, hosts: int, containers: int, edges: int, part: int,
           parts: int, fraction, rounds, stop, labels=None, nice: int = 0,
           metrics: bool = False) -> None:
    """Report the world's hosts ``part`` of ``parts`` every second: the flows
    that change this round (``fraction`` of them) get traffic. ``labels``:
    host -> its labels (bench/map_fleet.py keeps synthetic_world's). ``nice``:
    the collectors are other machines in a fleet, so they may yield the CPU
    to the server side here. ``metrics``: each container's cgroup metrics
    move every report, as a collector's do."""
    os.nice(nice)
    world = make_world(hosts, containers, edges)
    mine = [h for i, h in enumerate(world.containers) if i % parts == part]
    reporters = {h: RedisReporter(redis_client(url), Keys("portolan")) for h in mine}
    rng = random.Random(part)
    addrs = {h: {r.ips[0]: container_node_id(h, r.id) for r in world.containers[h]}
             for h in mine}
    next_at = time.time()
    while not stop.is_set():
        share = fraction.value
        for h in mine:
            deltas = traffic(world.flows[h], share, rng)
            if metrics:
                advance_metrics(world.containers[h], rng)
            reporters[h].report(HostReport(
                host=HostRecord(id=h, hostname=h, mode="ebpf",
                                labels=labels(h) if labels else {}),
                containers=world.containers[h], addrs=addrs[h], flows=deltas))
        with rounds.get_lock():
            rounds.value += 1
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.time()))
        next_at = max(next_at, time.time())


class Probe(threading.Thread):
    """A host whose one flow counts up every 0.5 s; remembers when each count
    was reported."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.reporter = RedisReporter(redis_client(url), Keys("portolan"))
        self.client = ContainerRecord(id="p1", name="probe-client", state="running",
                                      ips=["10.250.0.1"])
        self.key = FlowKey(container_node_id(PROBE, "p1"), "out", "203.0.113.9", 443)
        self.sent: dict[int, float] = {}
        self.seen: list[int] = []  # the probe edge's counts the timing socket saw
        self.types: Counter = Counter()  # its messages by type
        self.total = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.total += 1
            if self.reporter.report(HostReport(
                    host=HostRecord(id=PROBE), containers=[self.client],
                    flows=Counter({(self.key, "connections"): 1}))):
                self.sent[self.total] = time.time()
            self.stopped.wait(0.5)


# ------------------------------------------------------------ web tier


def start(argv, env, log):
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def session_cookie(env) -> str:
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    code = ("from django.contrib.auth import get_user_model;"
            "from django.test import Client;"
            "u, _ = get_user_model().objects.get_or_create(username='bench');"
            "c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)")
    out = subprocess.run([*manage, "shell", "-c", code], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True)
    return f"sessionid={out.stdout.strip().splitlines()[-1]}"


async def hold_maps(port, cookie, sockets, probe: Probe | None, latencies,
                    received, opened, stop, first: int = 0):
    """``sockets`` clients on the container map; with ``probe``, the first one
    decodes what it gets and times the probe (``latencies``: when each count
    was reported and when its diff arrived). ``opened`` gets each socket's
    handshake time, or -1 when it was refused (``refusals``: why)."""
    handles = []
    queues = []
    for i in range(sockets):
        t0 = time.monotonic()
        try:
            handle, queue = await open_map(port, cookie, decode=probe is not None)
        except (AssertionError, OSError) as exc:
            opened[first + i] = -1.0
            refusals.append(f"refused after {time.monotonic() - t0:.1f} s: "
                            f"{str(exc)[:60]}")
            continue
        opened[first + i] = time.monotonic() - t0
        handles.append(handle)
        queues.append(queue)
    probe_id = container_node_id(PROBE, "p1")

    async def drain(i, queue):
        while not stop.is_set():
            try:
                at, message = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            received[first + i] += 1
            if probe is not None:
                probe.types[message.get("type")] += 1
            if probe is None or message.get("type") != "diff":
                continue
            for edge in (message["changed_edges"] + message["added_edges"]
                         + message.get("updated_links", [])):
                if edge["source"] == probe_id and "connections" in edge:
                    # Every report this count takes in arrived now: one diff
                    # often carries two of the probe's (0.5 s apart).
                    count = edge["connections"]
                    for n in range(max(probe.seen, default=0) + 1, count + 1):
                        sent = probe.sent.get(n)
                        if sent is not None:
                            latencies.append((sent, time.time()))
                    probe.seen.append(count)

    await asyncio.gather(*(drain(i, q) for i, q in enumerate(queues)))
    for handle in handles:
        close_map(handle)


refusals: list[str] = []


def load_sockets(port, cookie, sockets, received, opened, stop,
                 nice: int = 0) -> None:
    """The other maps, in a process of their own: they only count messages,
    so one client process reading gigabytes does not delay the timing one.
    ``nice`` as for the writers: the browsers are other machines too."""
    os.nice(nice)
    asyncio.run(hold_maps(port, cookie, sockets, None, [], received, opened,
                          stop, first=1))


# ------------------------------------------------------------ stages


def read_rounds(path: Path) -> list[dict]:
    """The builder's rounds as it recorded them (``--timings``)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def quantiles(values) -> tuple[float | None, float | None]:
    """(p50, p95) of ``values``; the largest for p95 under 20 of them."""
    values = sorted(values)
    if not values:
        return None, None
    p95 = (statistics.quantiles(values, n=20)[18] if len(values) >= 20
           else values[-1])
    return statistics.median(values), p95


def report_stages(samples, rounds) -> dict[str, tuple]:
    """Each probe sample (reported, received) split by the round whose diffs
    were published last before it was received: ``wait`` (report -> that
    round's start), ``update``, ``publish`` (update done -> diffs published),
    ``relay`` (published -> received by the timing socket); p50 and p95 of
    each, and of the whole."""
    published = sorted((r["published"], i) for i, r in enumerate(rounds)
                       if r.get("published") and "container" in r["seqs"])
    at = [t for t, _ in published]
    parts: dict[str, list] = {"wait": [], "update": [], "publish": [],
                              "relay": [], "total": []}
    for sent, received in samples:
        i = bisect.bisect_right(at, received) - 1
        if i < 0:
            continue
        r = rounds[published[i][1]]
        # A round reads a host after its start: it may carry a report made
        # just after (its host's earlier notice had started it): no wait.
        parts["wait"].append(max(0.0, r["start"] - sent))
        parts["update"].append(r["updated"] - r["start"])
        parts["publish"].append(r["published"] - r["updated"])
        parts["relay"].append(received - r["published"])
        parts["total"].append(received - sent)
    return {name: quantiles(values) for name, values in parts.items()}


def round_stages(rounds) -> dict[str, tuple]:
    """The builder's rounds in a window: their length (start to the next
    start), update, store (update done -> stored), publish (update done ->
    published); p50 and p95 of each; how many stored a snapshot."""
    rounds = [r for r in rounds if r.get("stored")]
    out = {
        "length": quantiles(b["start"] - a["start"]
                            for a, b in zip(rounds, rounds[1:], strict=False)),
        "update": quantiles(r["updated"] - r["start"] for r in rounds),
        "store": quantiles(r["stored"] - r["updated"] for r in rounds),
        "publish": quantiles(r["published"] - r["updated"] for r in rounds
                             if r.get("published")),
        "hosts": quantiles(r["hosts"] for r in rounds),
        # moved metrics waiting to be drawn (a builder before it records none)
        "metrics_lag": quantiles(r.get("metrics_lag", 0.0) for r in rounds),
    }
    out["rounds"] = len(rounds)
    out["snapshots"] = sum("container" in r["snapshots"] for r in rounds)
    return out


# ------------------------------------------------------------ one backend


def redis_memory(url_ports) -> int:
    import redis

    total = 0
    for port in url_ports:
        client = redis.Redis(port=port)
        if client.info("replication")["role"] == "master":
            total += client.info("memory")["used_memory"]
        client.close()
    return total


def stored_seq(url: str) -> int:
    """The container level's step as the builder last marked it current."""
    from collector.redis_client import redis_client as any_client
    from webapp.builder.keys import GraphKeys
    from webapp.builder.stored import decode_fresh

    client = any_client(url)
    try:
        blob = client.get(GraphKeys().fresh("container"))
        return decode_fresh(blob)[1] if blob else 0
    finally:
        client.close()


def memory_by_kind(url: str) -> dict[str, tuple[int, int]]:
    """Kind of key (``flows``, ``history:fine``...) -> (keys, MEMORY USAGE)."""
    import redis

    client = redis.Redis.from_url(url)
    out: dict[str, list[int]] = {}
    for key in client.scan_iter(count=1000):
        parts = key.decode().split(":")
        kind = parts[1] + (":" + parts[-1] if parts[1] in ("history", "{graph}")
                           else "")
        entry = out.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += client.memory_usage(key, samples=0) or 0
    client.close()
    return {k: (n, b) for k, (n, b) in out.items()}


def run_backend(name: str, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="portolan-fleet-"))
    channel = RedisServer()
    channel.start()
    config = SHIPPED_REDIS_CONF if args.redis == "shipped" else None
    if name == "single":
        server = RedisServer(config)
        server.start()
        url, ports = server.url, [server.port]
    else:
        server = RedisClusterServers(config=config)
        server.start()
        url, ports = server.url, server.ports
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings",
           "REDIS_URL": url, "CHANNEL_REDIS_URL": channel.url,
           "DATABASE_PATH": str(tmp / "db.sqlite3"),
           "PORTOLAN_VAR_DIR": str(tmp / "var"),
           "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}
    procs, result = [], {"backend": name}
    stop = mp.Event()
    fraction = mp.Value("d", 1.0)  # the first rounds write every flow
    rounds = mp.Value("i", 0)
    probe = Probe(url)
    try:
        cookie = session_cookie(env)
        t0 = time.time()
        writers = [mp.Process(target=writer, args=(
            url, args.hosts, args.containers, args.edges, i, 2, fraction, rounds,
            stop, None, args.clients_nice, args.metrics)) for i in range(2)]
        for w in writers:
            w.start()
        while rounds.value < 2:
            time.sleep(0.2)
        result["first_write_s"] = time.time() - t0
        log = open(tmp / "procs.log", "wb")  # noqa: SIM115 - lives with the run
        timings = tmp / "rounds.jsonl"
        orders = args.orders.split(",")

        def start_builder(order: str):
            argv = [sys.executable, "manage.py", "builder", "--timings",
                    str(timings)]
            return start(argv + (["--store-first"] if order == "store-first"
                                 else []), env, log)

        builder = start_builder(orders[0])
        builder_order = orders[0]
        port = free_port()
        daphne = start([str(VENV_BIN / "daphne"), "-p", str(port), "-b", "127.0.0.1",
                        "webapp.asgi:application"], env, log)
        procs = [daphne]
        probe.start()

        from webapp.builder.keys import GraphKeys

        key = GraphKeys().snapshot("container")
        from collector.redis_client import redis_client as any_client
        from webapp.builder.stored import mark_watched

        c = any_client(url)
        t0 = time.time()
        while not c.exists(key):
            # The builder builds only watched levels; the maps will watch it.
            mark_watched(c, GraphKeys(), "container")
            time.sleep(0.2)
            if time.time() - t0 > 120:
                raise RuntimeError("the builder stored no graph in 120 s")
        result["first_build_s"] = time.time() - t0
        c.close()

        latencies: list[tuple[float, float]] = []  # (reported, received)
        received = mp.Array("i", args.sockets)
        opened = mp.Array("d", [0.0] * args.sockets)
        loop_stop = threading.Event()

        def timing_client():
            asyncio.run(hold_maps(port, cookie, 1, probe, latencies, received,
                                  opened, loop_stop))

        holder = threading.Thread(target=timing_client, daemon=True)
        holder.start()
        others = mp.Process(target=load_sockets, args=(
            port, cookie, args.sockets - 1, received, opened, stop,
            args.clients_nice))
        others.start()
        t0 = time.time()
        while 0.0 in opened[:] and time.time() - t0 < 120:
            time.sleep(0.2)
        result["sockets_open_s"] = time.time() - t0
        result["opened"] = list(opened[:])
        time.sleep(5)  # snapshots delivered, steady state

        def measure(seconds: float) -> dict:
            """One window of the phase running: rates, CPU, latencies and
            where they went."""
            latencies.clear()
            r0, b0, d0, w0 = (rounds.value, cpu_seconds(builder.pid),
                              cpu_seconds(daphne.pid), time.monotonic())
            s0, m0, q0 = stored_seq(url), received[0], probe.types["diff"]
            t0 = time.time()
            time.sleep(seconds)
            # At full scale every flow changing is ~10 s a round for the
            # writers: measure at least two whole rounds (both writers).
            while rounds.value - r0 < 4 and time.monotonic() - w0 < 60:
                time.sleep(0.2)
            r1, b1, d1, w1 = (rounds.value, cpu_seconds(builder.pid),
                              cpu_seconds(daphne.pid), time.monotonic())
            s1, m1, q1 = stored_seq(url), received[0], probe.types["diff"]
            t1 = time.time()
            # The window's last reports received: a round started after it
            # has published, and a second more for the relay (20 s at most).
            while time.time() - t1 < 20 and not any(
                    r["start"] > t1 and r.get("published")
                    for r in read_rounds(timings)[-5:]):
                time.sleep(0.2)
            time.sleep(1.0)
            samples = [(a, b) for a, b in latencies if t0 <= a <= t1]
            window = [r for r in read_rounds(timings) if t0 <= r["start"] <= t1]
            per_round = (r1 - r0) / 2  # two writers: a round is both halves
            p50, p95 = quantiles(b - a for a, b in samples)
            return {
                "rounds_per_s": per_round / (w1 - w0),
                "builder_cpu_per_round": (b1 - b0) / max(per_round, 1e-9),
                "builder_cpu_share": (b1 - b0) / (w1 - w0),
                "daphne_cpu_share": (d1 - d0) / (w1 - w0),
                "latency_p50": p50,
                "latency_p95": p95,
                "latency_samples": len(samples),
                # container-level steps the builder stored (None: its fresh
                # mark lapsed, a step took longer than its TTL)
                "steps": s1 - s0 if s0 and s1 else None,
                "timing_messages": m1 - m0,
                # Daphne's CPU per diff message it sent to each socket: what
                # a relay costs whatever rate a loaded builder manages
                "daphne_ms_per_diff_socket": (
                    1000 * (d1 - d0) / (q1 - q0) / args.sockets if q1 > q0
                    else None),
                "report_stages": report_stages(samples, read_rounds(timings)),
                "round_stages": round_stages(window),
            }

        for phase, share, seconds in (("typical", 0.05, args.seconds),
                                      ("all", 1.0, max(10, args.seconds // 2))):
            if phase not in args.phases.split(","):
                continue
            fraction.value = share
            time.sleep(3)  # the share applies from the next round on
            for n, order in enumerate(orders):
                if order != builder_order:
                    # A standby's takeover: the old builder killed, the new
                    # one waits out its lease, continues the stored level
                    # and rebuilds it once.
                    builder.terminate()
                    builder.wait(10)
                    switched = time.time()
                    builder, builder_order = start_builder(order), order
                    while len([r for r in read_rounds(timings)
                               if r["start"] > switched
                               and "container" in r["seqs"]]) < 2:
                        time.sleep(0.5)
                        if time.time() - switched > 180:
                            raise RuntimeError(f"the {order} builder published "
                                               "no diff in 180 s")
                    time.sleep(3)
                result.setdefault("measured", []).append(
                    (f"{phase} {order} #{n + 1}", phase, order,
                     measure(seconds)))
        result["memory_per_container"] = redis_memory(ports) / args.containers
        result["memory_by_kind"] = memory_by_kind(url) if name == "single" else {}
        result["messages_per_socket"] = statistics.median(received[1:] or [0])
        result["probe"] = (len(probe.sent), probe.total, len(probe.seen),
                           probe.seen[-3:], dict(probe.types))
        loop_stop.set()
        holder.join(5)
    finally:
        stop.set()
        probe.stopped.set()
        if "builder" in locals():
            procs.append(builder)
        for p in procs:
            p.terminate()
            p.wait(10)
        for w in mp.active_children():
            w.join(10)
        server.stop()
        channel.stop()
    return result


def fmt(value, goal=None, unit=""):
    if value is None:
        return "n/a"
    text = f"{value:.3f}{unit}"
    return f"{text} ({value / goal:.2f}x goal)" if goal else text


RATIO_FIGURES = {
    "report->diff p50": lambda p: p["latency_p50"],
    "report->diff p95": lambda p: p["latency_p95"],
    **{f"{name} p95": (lambda p, n=name: p["report_stages"][n][1])
       for name in ("wait", "update", "publish", "relay")},
    "round length p50": lambda p: p["round_stages"]["length"][0],
    "builder CPU per round": lambda p: p["builder_cpu_per_round"],
}


def median_of(windows: list[dict], get) -> float | None:
    values = [v for p in windows if (v := get(p)) is not None]
    return statistics.median(values) if values else None


def print_ratios(measured) -> None:
    """Each phase's figures under the first order against the others'
    (medians over the windows of each order)."""
    by: dict[str, dict[str, list]] = {}
    for _label, phase, order, p in measured:
        by.setdefault(phase, {}).setdefault(order, []).append(p)
    for phase, orders in by.items():
        base, *others = orders
        for other in others:
            cells = []
            for name, get in RATIO_FIGURES.items():
                a, b = median_of(orders[base], get), median_of(orders[other], get)
                ratio = f"{a / b:.2f}x" if a is not None and b else "n/a"
                cells.append(f"{name} {fmt(a)} vs {fmt(b)} ({ratio})")
            print(f"[{phase}] {base} vs {other}: " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--backends", default="single")
    parser.add_argument("--phases", default="typical,all",
                        help="typical (~5 %% of flows change), all, or both")
    parser.add_argument("--orders", default="publish-first",
                        help="builder orders to measure each phase under, in "
                             "turn (publish-first, store-first; repeats allowed)")
    parser.add_argument("--clients-nice", type=int, default=0,
                        help="nice value of the writer processes and the 49 "
                             "counting sockets (in a fleet they are other "
                             "machines; 19 lets Redis, the builder and Daphne "
                             "have this machine's CPU first)")
    parser.add_argument("--metrics", action="store_true",
                        help="the containers' cgroup metrics move every report, "
                             "as a collector's do (the world has none otherwise)")
    parser.add_argument("--redis", choices=("shipped", "stock"), default="shipped",
                        help="the data Redis's settings: Portolan's "
                             "(deploy/redis.conf) or redis-server's defaults")
    args = parser.parse_args()
    for name in args.backends.split(","):
        r = run_backend(name, args)
        print(f"\n== {name}: {args.hosts} collectors, {args.containers} containers, "
              f"{args.edges} flows, {args.sockets} sockets, clients at nice "
              f"{args.clients_nice}, {args.redis} Redis settings, "
              f"{'moving' if args.metrics else 'no'} container metrics")
        print(f"first report round {r['first_write_s']:.1f} s; first build and "
              f"store {r['first_build_s']:.1f} s")
        times = [t for t in r["opened"] if t > 0]
        print(f"sockets opened {len(times)}/{args.sockets} in "
              f"{r['sockets_open_s']:.1f} s (slowest handshake "
              f"{max(times, default=0):.2f} s); refused "
              f"{sum(t < 0 for t in r['opened'])}")
        goals = {"typical": 0.5, "all": 1.0}
        for label, phase, _order, p in r.get("measured", []):
            print(f"[{label}] rounds/s {p['rounds_per_s']:.2f} | builder CPU per "
                  f"round {fmt(p['builder_cpu_per_round'], goals[phase], ' s')} | "
                  f"report->diff p50 {fmt(p['latency_p50'], unit=' s')} p95 "
                  f"{fmt(p['latency_p95'], 2.0, ' s')} (n={p['latency_samples']}) | "
                  f"Daphne CPU {fmt(p['daphne_cpu_share'], 0.10)} "
                  f"({fmt(p['daphne_ms_per_diff_socket'], unit=' ms')} per diff "
                  f"message and socket) | builder steps "
                  f"{p['steps']}, timing socket messages {p['timing_messages']}")
            print("    report->diff by stage, p50 / p95 s: " + ", ".join(
                f"{name} {fmt(a)} / {fmt(b)}"
                for name, (a, b) in p["report_stages"].items()))
            rs = p["round_stages"]
            print(f"    builder rounds: {rs['rounds']} ({rs['snapshots']} stored a "
                  "snapshot), p50 / p95 s: " + ", ".join(
                      f"{name} {fmt(rs[name][0])} / {fmt(rs[name][1])}"
                      for name in ("length", "update", "publish", "store"))
                  + f", hosts a round {fmt(rs['hosts'][0])}, moved metrics "
                  f"waiting to be drawn at most {fmt(rs['metrics_lag'][1])} s (p95)")
        print_ratios(r.get("measured", []))
        print(f"Redis memory per container "
              f"{fmt(r['memory_per_container'] / 1000, 7.0, ' kB')}; "
              f"messages per socket {r['messages_per_socket']}")
        print("probe: reports written {}/{}, seen by the timing socket {} "
              "(last {}), its messages {}".format(*r["probe"]))
        for kind, (n, size) in sorted(r["memory_by_kind"].items(),
                                      key=lambda kv: -kv[1][1]):
            print(f"  {kind:22s} {n:6d} keys {size / args.containers:8.0f} B "
                  f"per container")


if __name__ == "__main__":
    main()
