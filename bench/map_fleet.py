"""Map fleet: first map, pan and zoom of a 10,000-container map in headless
Chromium, drawn by level of detail (frontend/src/fleet.js) and, for
comparison, whole (``?lod=off``).

Starts its own redis-server and Daphne (bench/map_render.py's stack), writes a
world of 500 labelled hosts, 10,000 containers and ~50,000 flows with
bench/synthetic_world.py, logs in and opens the container level. For each mode
it prints the time to the first drawn map (with the page's milestones, to
tell the server's part from the browser's), then frames per second while

- panning the whole fleet (zoomed to fit: host tiles),
- zooming with the wheel from there (tiles, then containers),
- panning at container detail (zoom 0.5: the containers in view),

and the floor: the same pan over an empty map (what Chromium, the input
events and Cytoscape's own frame cost give at best here).

    .venv/bin/python bench/map_fleet.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--seconds 3] [--runs 1] [--modes lod,off]
        [--before-bundle OLD/map.js]

``--before-bundle`` serves another build of the page's script (e.g. one made
from an earlier commit with scripts/frontend.sh) to a second page per mode,
so that before and after are measured in one run on one machine state.

Goals (issue 17): first map < 3 s, pan and zoom >= 30 fps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from map_render import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    COUNT_START_JS,
    COUNT_STOP_JS,
    PASSWORD,
    USER,
    motion,
    print_profile,
    start_stack,
    wait,
)
from synthetic_world import make_world, write_world  # noqa: E402

GOAL_FIRST_MS = 3000
GOAL_FPS = 30
DETAIL_ZOOM = 0.5
NODE_TTL = 3600


def stored_containers(redis_url: str) -> int:
    """Containers in the builder's stored container-level snapshot (0 if none).

    Marks the level watched: the builder keeps only levels someone reads
    current, and the page is opened once the whole world is stored."""
    import json

    import redis

    from webapp.builder.keys import GraphKeys, decode_snapshot_blob
    from webapp.builder.stored import mark_watched

    client = redis.Redis.from_url(redis_url)
    try:
        mark_watched(client, GraphKeys(), "container")
        blob = client.get(GraphKeys().snapshot("container"))
    finally:
        client.close()
    if not blob:
        return 0
    _seq, texts = decode_snapshot_blob(blob)
    return sum(1 for text in texts if text
               for node in json.loads(text).get("graph", {}).get("nodes", [])
               if node.get("type") == "container")


def drawing(page) -> dict:
    return page.evaluate(
        "() => window.portolanMap.drawing()"
    )


def zoom_motion(page, seconds: float, low: float = 0.05,
                high: float = 1.5) -> dict:
    """Wheel in and out between ``low`` and ``high`` (a wheel past the
    container level's finer threshold would switch to services)."""
    page.mouse.move(640, 460)
    page.evaluate(COUNT_START_JS)
    deadline = time.monotonic() + seconds
    direction = -1
    zooms = []
    while time.monotonic() < deadline:
        for _ in range(6):
            page.mouse.wheel(0, 1000 * direction)
            page.wait_for_timeout(8)
        zoom = page.evaluate("() => window.portolanMap.zoom()")
        zooms.append(zoom)
        if zoom > high:
            direction = 1
        elif zoom < low:
            direction = -1
    out = page.evaluate(COUNT_STOP_JS)
    out["range"] = (min(zooms), max(zooms))
    return out


def measure(context, web_url: str, mode: str, seconds: float,
            bundle: Path | None = None) -> dict:
    page = context.new_page()
    if bundle is not None:
        page.route("**/static/portolan/map.js*", lambda route: route.fulfill(
            path=str(bundle), content_type="application/javascript"))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    load = os.getloadavg()  # the machine is shared: say how busy it was
    lod = "" if mode == "lod" else "&lod=off"
    cdp = None
    if os.environ.get("PORTOLAN_PROFILE"):
        cdp = context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.start")
    page.goto(f"{web_url}/?level=container{lod}")
    page.wait_for_function(
        "() => window.portolanMap && window.portolanMap.firstDrawMs !== null",
        timeout=300_000,
    )
    if cdp is not None:
        print_profile(cdp.send("Profiler.stop")["profile"])
    out = {"load": load,
           "first_ms": page.evaluate("() => window.portolanMap.firstDrawMs"),
           "marks": page.evaluate("() => window.portolanMap.marks")}
    # Dragging a node would move it: every drag pans the map.
    page.evaluate("() => window.portolanMap.cy.autoungrabify(true)")
    page.wait_for_timeout(500)
    out["fit"] = drawing(page)
    out["pan_fit"] = motion(page, "pan", seconds)
    out["zoom"] = zoom_motion(page, seconds)
    page.evaluate(
        f"""() => {{ const cy = window.portolanMap.cy;
                    cy.zoom({{ level: {DETAIL_ZOOM},
                              renderedPosition: {{ x: cy.width() / 2,
                                                   y: cy.height() / 2 }} }}); }}"""
    )
    page.wait_for_timeout(800)
    out["detail"] = drawing(page)
    out["pan_detail"] = motion(page, "pan", seconds)
    # The floor: nothing drawn, nothing redrawn.
    page.evaluate("() => { const cy = window.portolanMap.cy; cy.off('viewport');"
                  " cy.elements().remove(); }")
    page.wait_for_timeout(300)
    out["pan_empty"] = motion(page, "pan", seconds)
    out["errors"] = errors
    out["received"] = page.evaluate("() => window.portolanMap.received()")
    page.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--modes", default="lod,off")
    parser.add_argument("--before-bundle", type=Path,
                        help="also measure each mode with this map.js")
    args = parser.parse_args()
    bundles: list[tuple[str, Path | None]] = [("", None)]
    if args.before_bundle is not None:
        if not args.before_bundle.is_file():
            parser.error(f"--before-bundle: no file {args.before_bundle}")
        bundles.insert(0, (" (before)", args.before_bundle))

    from playwright.sync_api import sync_playwright

    subprocess.run(["bash", str(ROOT / "scripts/frontend.sh")], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="portolan-bench-"))
    # The web tier reads hosts that reported within this (writing 500 takes a while).
    os.environ["PORTOLAN_NODE_TTL"] = str(NODE_TTL)
    procs, redis_url, web_url = start_stack(tmp)
    try:
        started = time.monotonic()
        world = make_world(args.hosts, args.containers, args.edges)
        # Writing 500 hosts takes longer than a node's usual 30 s TTL.
        flows = write_world(world, redis_url, node_ttl=NODE_TTL)
        containers = sum(map(len, world.containers.values()))
        print(f"world: {args.hosts} hosts, {containers} containers, {flows} "
              f"flows (written in {time.monotonic() - started:.1f} s)", flush=True)
        # The page is opened once the builder holds the whole world: a map
        # opened earlier gets a snapshot again for each host it adds.
        if not wait(lambda: stored_containers(redis_url) >= containers, 300):
            raise RuntimeError("the builder did not store the whole world in 300 s")
        print(f"builder stored it {time.monotonic() - started:.1f} s after the "
              "first write", flush=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{web_url}/login/")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login/" not in url)
            page.close()
            results: dict[str, list[dict]] = {}
            for _ in range(args.runs):
                for mode in args.modes.split(","):
                    for label, bundle in bundles:
                        key = f"{mode}{label}"
                        results.setdefault(key, []).append(
                            measure(context, web_url, mode, args.seconds, bundle))
                        report(key, results[key][-1])
            browser.close()
        for mode, runs in results.items():
            med = statistics.median
            print(f"{mode}: median of {len(runs)}: first map "
                  f"{med(r['first_ms'] for r in runs):.0f} ms, pan (fit) "
                  f"{med(r['pan_fit']['fps'] for r in runs):.1f} fps, zoom "
                  f"{med(r['zoom']['fps'] for r in runs):.1f} fps, pan (detail) "
                  f"{med(r['pan_detail']['fps'] for r in runs):.1f} fps, floor "
                  f"{med(r['pan_empty']['fps'] for r in runs):.1f} fps")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def report(mode: str, r: dict) -> None:
    m = r["marks"]
    fps = [("pan (fit)", r["pan_fit"]), ("zoom", r["zoom"]),
           ("pan (detail)", r["pan_detail"]), ("pan (empty map)", r["pan_empty"])]
    print(f"[{mode}] load average {' '.join(f'{x:.1f}' for x in r['load'])}")
    print(f"[{mode}] first map {r['first_ms']:.0f} ms (goal {GOAL_FIRST_MS}, ratio "
          f"{r['first_ms'] / GOAL_FIRST_MS:.2f}): first snapshot part at "
          f"{m['firstPart']:.0f} ms, whole graph in at {m['graphIn']:.0f} ms, "
          f"applied at {m['applied']:.0f} ms, ready at {m['ready']:.0f} ms")
    print(f"[{mode}] drawn at fit: {r['fit']}; at zoom {DETAIL_ZOOM}: {r['detail']}")
    lo, hi = r["zoom"]["range"]
    print(f"[{mode}] zoomed between {lo:.3f} and {hi:.3f}; socket: {r['received']}")
    for name, f in fps:
        print(f"[{mode}] {name:<16} {f['fps']:5.1f} fps (goal {GOAL_FPS}, ratio "
              f"{f['fps'] / GOAL_FPS:.2f}, p95 frame {f['p95']:.0f} ms)")
    if r["errors"]:
        print(f"[{mode}] page errors: {r['errors'][:3]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
