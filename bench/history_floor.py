"""How small an hour of container metrics could be in history, whatever the format.

Issue 17 asks for Redis memory <= 7 kB a container. ``bench/history_memory.py``
measures what the history holds; this measures a floor beneath any encoding of
its metrics: the same world's containers (``synthetic_world.advance_metrics``,
a report a second, the values a collector reports) sampled as the history
keeps them (fine: every ``--step`` s for the last ``--fine`` s; coarse: every
``--coarse-step`` s for ``--window`` s), each value as its change since the
container's previous sample (floats as integers of their decimals), every
series of a host's tier packed together and compressed with LZMA at its
strongest over the whole window. Nothing that writes a snapshot as it comes
can do better than a compressor that sees the whole hour at once, so the
figure is an optimistic floor, not a format to ship.

    .venv/bin/python bench/history_floor.py [--hosts 10] [--seconds 3600]
        [--step 5] [--fine 900] [--coarse-step 60] [--window 3600]
"""

from __future__ import annotations

import argparse
import lzma
import random
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import advance_metrics, make_world  # noqa: E402

GOAL_PER_CONTAINER = 7000  # issue 17


def as_integer(value) -> int | None:
    """A metric as an integer of its decimals (``0.1234`` -> ``1234``), None
    for what is not a number (a limit that is unset)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    exact = Decimal(repr(value))
    exponent = exact.as_tuple().exponent
    return int(exact.scaleb(-exponent)) if exponent < 0 else int(value)


def zigzag_varint(n: int) -> bytes:
    """A signed integer as a little-endian base-128 varint of its zigzag."""
    z = (n << 1) ^ (n >> 63) if -(1 << 63) <= n < (1 << 63) else abs(n) * 2
    out = bytearray()
    while True:
        byte, z = z & 0x7F, z >> 7
        out.append(byte | (0x80 if z else 0))
        if not z:
            return bytes(out)


def packed_changes(samples: list[dict[str, dict]]) -> tuple[bytes, int]:
    """A tier's samples (container id -> metrics, oldest first) as each
    series' changes since its previous sample, series after series; and
    how many values that is."""
    series: dict[tuple[str, str], list[int]] = {}
    for sample in samples:
        for cid, metrics in sample.items():
            for name, value in metrics.items():
                number = as_integer(value)
                if number is not None:
                    series.setdefault((name, cid), []).append(number)
    out = bytearray()
    for _, values in sorted(series.items()):
        previous = 0
        for v in values:
            out += zigzag_varint(v - previous)
            previous = v
    return bytes(out), sum(map(len, series.values()))


def floor_bytes(samples: list[dict[str, dict]]) -> tuple[int, int, int]:
    """(values, varint bytes, LZMA bytes) of one host's tier."""
    raw, values = packed_changes(samples)
    return values, len(raw), len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--fine", type=int, default=900)
    parser.add_argument("--coarse-step", type=int, default=60)
    parser.add_argument("--window", type=int, default=3600)
    args = parser.parse_args()
    world = make_world(500, 10_000, 50_000)
    hosts = sorted(world.containers)[: args.hosts]
    rng = random.Random(3)
    tiers = {"fine": {h: [] for h in hosts}, "coarse": {h: [] for h in hosts}}
    for t in range(1, args.seconds + 1):
        for h in hosts:
            advance_metrics(world.containers[h], rng, 1.0)
            now = {r.id: dict(r.metrics) for r in world.containers[h] if r.metrics}
            if t % args.step == 0 and t > args.seconds - args.fine:
                tiers["fine"][h].append(now)
            if t % args.coarse_step == 0 and t > args.seconds - args.window:
                tiers["coarse"][h].append(now)
    containers = sum(len(world.containers[h]) for h in hosts)
    print(f"{args.hosts} hosts, {containers} containers of the fleet world, "
          f"metrics moving every 1 s report; fine every {args.step} s for "
          f"{args.fine} s, coarse every {args.coarse_step} s for {args.window} s")
    total = 0.0
    for tier, by_host in tiers.items():
        values = varint = packed = 0
        for samples in by_host.values():
            v, r, p = floor_bytes(samples)
            values, varint, packed = values + v, varint + r, packed + p
        moving = values / containers / max(len(next(iter(by_host.values()))), 1)
        total += packed / containers
        print(f"  {tier:6s} {len(next(iter(by_host.values()))):4d} samples, "
              f"{moving:.0f} numeric values a container each: changes as varints "
              f"{varint / containers:,.0f} B a container, LZMA over the window "
              f"{packed / containers:,.0f} B a container "
              f"({8 * packed / max(values, 1):.1f} bits a value)")
    print(f"  metric history's floor: {total:,.0f} B a container "
          f"({total / GOAL_PER_CONTAINER:.2f}x the 7 kB goal by itself)")


if __name__ == "__main__":
    main()
