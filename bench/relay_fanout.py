"""A Daphne worker relaying one diff a second to 1, 10 and 50 open maps.

``bench/fleet_scale.py`` measures the relay inside a 500-host fleet, where the
rate of diffs is whatever a loaded builder manages; this measures the relay
alone: a diff shaped like the fleet's typical second (``updated_links`` of
container edges: counters and ``*_per_s`` rates, about 2 MB of JSON, split
into messages as the builder splits it) is stored and published through the
Channels layer as the builder does, once a second, to one Daphne worker that
holds ``sockets`` raw WebSocket clients (in a process of their own; they count
messages and bytes). Daphne's CPU comes from /proc.

    .venv/bin/python bench/relay_fanout.py [--sockets 1,10,50] [--seconds 20]
        [--diff-mb 2]

Goal (issue 17): a Daphne worker relaying to 50 sockets < 10 % of a core, and
flat from 1 to 50 sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_scale import cpu_seconds, session_cookie, start  # noqa: E402
from synthetic_world import make_world  # noqa: E402

from collector.schema import container_node_id  # noqa: E402
from tests.conftest import RedisServer, free_port  # noqa: E402
from tests.integration.test_builder import close_map, open_map  # noqa: E402

VENV_BIN = Path(sys.executable).parent
LEVEL = "container"


def typical_diff(target_bytes: int, seed: int) -> dict:
    """A diff like the fleet's typical second: edges' changed counters and
    rates (rounded as the graph rounds them) until ``target_bytes`` of JSON."""
    from webapp.maps.diff import empty_diff

    world = make_world(500, 10000, 50000)
    rng = random.Random(seed)
    edges = [(container_node_id(h, r.id), container_node_id(h2, r2.id))
             for h, records in world.containers.items() for r in records[:1]
             for h2 in list(world.containers)[:20] for r2 in world.containers[h2][:5]]
    diff, size = empty_diff(), 0
    for source, target in edges:
        connections = rng.randint(1, 400)
        link = {"source": source, "target": target,
                "connections": connections * 60,
                "bytes_sent": rng.randint(10**4, 10**8),
                "bytes_received": rng.randint(10**4, 10**9),
                "connections_per_s": round(connections / rng.uniform(0.8, 1.2), 3),
                "bytes_sent_per_s": round(rng.uniform(100, 5e5), 3),
                "bytes_received_per_s": round(rng.uniform(100, 5e6), 3)}
        diff["updated_links"].append(link)
        size += len(str(link))
        if size >= target_bytes:
            break
    return diff


def publish_message(seq: int, texts: list[str]) -> dict:
    """The group message as this tree's builder publishes it."""
    from webapp.builder.keys import UPDATE_TYPE

    try:
        from webapp.maps.frames import pack_frame
    except ImportError:  # a tree from before binary frames
        return {"type": UPDATE_TYPE, "level": LEVEL, "seq": seq, "texts": texts}
    return {"type": UPDATE_TYPE, "level": LEVEL, "seq": seq,
            "frames": [pack_frame(t) for t in texts]}


def hold_maps(port: int, cookie: str, sockets: int, counts, stop) -> None:
    """``sockets`` raw clients on the container map: messages and bytes."""

    async def main():
        handles, queues = [], []
        for _ in range(sockets):
            handle, queue = await open_map(port, cookie, decode=False)
            handles.append(handle)
            queues.append(queue)
        counts[2] = sockets

        async def drain(queue):
            while not stop.is_set():
                try:
                    _, body = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                with counts.get_lock():
                    counts[0] += 1
                    counts[1] += len(body)

        await asyncio.gather(*(drain(q) for q in queues))
        for handle in handles:
            close_map(handle)

    asyncio.run(main())


def run(sockets: int, seconds: float, texts: list[str]) -> dict:
    import django

    from webapp.builder.builder import MESSAGE_LIMIT  # noqa: F401 - the split used
    from webapp.builder.keys import GraphKeys, encode_entry, encode_snapshot_blob
    from webapp.maps.diff import encode_snapshot

    tmp = Path(tempfile.mkdtemp(prefix="portolan-relay-"))
    server = RedisServer()
    server.start()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings",
           "REDIS_URL": server.url, "CHANNEL_REDIS_URL": server.url,
           "DATABASE_PATH": str(tmp / "db.sqlite3"),
           "PORTOLAN_VAR_DIR": str(tmp / "var"), "LOG_LEVEL": "WARNING"}
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "REDIS_URL",
                                           "CHANNEL_REDIS_URL", "DATABASE_PATH",
                                           "PORTOLAN_VAR_DIR")})
    django.setup()
    from channels.layers import get_channel_layer

    from collector.redis_client import redis_client
    from webapp.builder.keys import group_name

    gkeys, client = GraphKeys(), redis_client(server.url)
    seq = 1000
    snapshot = encode_snapshot(LEVEL, {"nodes": [{"id": "x"}], "links": []},
                               512 * 1024)
    client.set(gkeys.snapshot(LEVEL), encode_snapshot_blob(seq, snapshot), ex=600)
    cookie = session_cookie(env)
    port = free_port()
    log = open(tmp / "daphne.log", "wb")  # noqa: SIM115 - lives with the run
    daphne = start([str(VENV_BIN / "daphne"), "-p", str(port), "-b", "127.0.0.1",
                    "webapp.asgi:application"], env, log)
    stop = mp.Event()
    counts = mp.Array("q", 3)
    clients = None
    try:
        t0 = time.time()
        while time.time() - t0 < 60:  # Daphne up (Django loads slowly when busy)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        clients = mp.Process(target=hold_maps, args=(port, cookie, sockets, counts,
                                                     stop))
        clients.start()
        t0 = time.time()
        while counts[2] < sockets and time.time() - t0 < 60:
            time.sleep(0.2)
        time.sleep(2)

        async def publish():
            nonlocal seq
            layer = get_channel_layer()
            next_at = time.monotonic()
            d0, w0, m0, b0 = cpu_seconds(daphne.pid), time.monotonic(), counts[0], \
                counts[1]
            steps = 0
            while time.monotonic() - w0 < seconds:
                seq += 1
                client.rpush(gkeys.diffs(LEVEL), encode_entry(seq, texts))
                await layer.group_send(group_name(LEVEL), publish_message(seq, texts))
                steps += 1
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.sleep(1.0)  # the last step delivered
            d1, w1 = cpu_seconds(daphne.pid), time.monotonic()
            return {"cpu_share": (d1 - d0) / (w1 - w0), "steps": steps,
                    "ms_per_step_socket": 1000 * (d1 - d0) / steps / sockets,
                    "messages": counts[0] - m0, "bytes": counts[1] - b0}

        result = asyncio.run(publish())
        result["opened"] = counts[2]
        result["load"] = os.getloadavg()
        return result
    finally:
        stop.set()
        if clients is not None:
            clients.join(10)
        daphne.terminate()
        daphne.wait(10)
        client.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--diff-mb", type=float, default=2.0)
    args = parser.parse_args()
    from webapp.builder.builder import MESSAGE_LIMIT
    from webapp.maps.diff import encode_diff

    texts = encode_diff(typical_diff(int(args.diff_mb * 1e6), 1), MESSAGE_LIMIT)
    print(f"diff: {sum(map(len, texts)) / 1e6:.2f} MB of JSON in {len(texts)} "
          f"messages, one a second")
    for n in map(int, args.sockets.split(",")):
        r = subprocess.run(
            [sys.executable, __file__, "--one", str(n), str(args.seconds),
             str(args.diff_mb)], capture_output=True, text=True, cwd=ROOT)
        print(r.stdout.strip() or r.stderr.strip()[-2000:])


def one(sockets: int, seconds: float, diff_mb: float) -> None:
    from webapp.builder.builder import MESSAGE_LIMIT
    from webapp.maps.diff import encode_diff

    texts = encode_diff(typical_diff(int(diff_mb * 1e6), 1), MESSAGE_LIMIT)
    r = run(sockets, seconds, texts)
    if r["opened"] != sockets:
        print(f"{sockets:3d} sockets: only {r['opened']} opened")
        return
    print(f"{sockets:3d} sockets: Daphne CPU {100 * r['cpu_share']:.1f} % of a "
          f"core (goal < 10 %), {r['ms_per_step_socket']:.2f} ms per diff and "
          f"socket; {r['steps']} diffs, {r['messages']} messages "
          f"({r['bytes'] / 1e6:.1f} MB) received; load {r['load'][0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
