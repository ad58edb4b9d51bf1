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

A fleet changes while it is watched: after the builder stored the world,
bench/fleet_scale.py's writers (real RedisReporters, in two processes) report
every host every second with ~5 % of the flows carrying new traffic
(``--changing``), so the page gets a diff about every second. Each motion is
measured twice in one page (``--diffs both``, the default): "still" (the
writers report every host with no flow changing, or with ``--still stopped``
are stopped with SIGSTOP; the diffs of the change let through first) and
"live". Each line says how many diffs the page
applied during the measurement, their time on the page's main thread and the
longest task of the main thread (PerformanceObserver "longtask": parsing a
diff, applying it, drawing).

The builder's diffs reach the page in bursts (0 to 23 in 3 s), so "live"
lines compare different amounts of work. ``--pace 1,4`` measures each motion
instead "still" and then at each pace (diffs a second) in one page: the
writers keep changing the fleet throughout, and the page's socket messages are
held in the page and handed to its own listener one per interval
(bench/diff_pacing.py says how, and what that does not cover). Each line then
also gives the messages handed on and the time JSON.parse took for them.
``PORTOLAN_PROFILE=motions`` (with ``--pace``) prints each motion's JavaScript
profile (self time by function; the profiler slows the page), any other value
the profile up to the first map.

    .venv/bin/python bench/map_fleet.py [--hosts 500] [--containers 10000]
        [--edges 50000] [--seconds 3] [--runs 1] [--modes lod,off]
        [--diffs both|live|still] [--still quiet|stopped] [--changing 0.05] [--metrics]
        [--pace 1,4] [--before-bundle OLD/map.js]

Every ``page.evaluate`` here returns plain data or nothing: Playwright
serialises whatever the function returns, and ``cy.viewport(v)`` or
``cy.autoungrabify(true)`` return the Cytoscape instance, whose object graph
(every element, its data, the renderer's caches) took the page's heap to ~3 GB
and 25 s of its main thread, and crashed it at 10,000 containers.

``--before-bundle`` serves another build of the page's script (e.g. one made
from an earlier commit with scripts/frontend.sh) to a second page per mode,
so that before and after are measured in one run on one machine state.

Goals (issue 17): first map < 3 s, pan and zoom >= 30 fps.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from diff_pacing import Pacing  # noqa: E402
from fleet_scale import writer  # noqa: E402
from map_render import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    COUNT_START_JS,
    COUNT_STOP_JS,
    PASSWORD,
    USER,
    WHOLE_MAP_DRAWN_JS,
    WHOLE_MAP_MS_JS,
    motion,
    print_profile,
    start_stack,
    wait,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from synthetic_world import host_labels, make_world, world_size_arguments, write_world  # noqa: E402

GOAL_FIRST_MS = 3000
GOAL_FPS = 30
DETAIL_ZOOM = 0.5
NODE_TTL = 3600
WRITERS = 2
# After the writers go quiet or busy: the diffs of the change reach the page.
SETTLE_S = 4
# Paced: how long to wait for enough held messages (~1 diff a second comes).
QUEUE_TIMEOUT_S = 60


class Writers:
    """bench/fleet_scale.py's writer processes reporting the world every
    second; for the still measurements quiet (no flow changing, the hosts
    still reporting) or, with ``still="stopped"``, stopped (SIGSTOP: the hosts
    stop reporting, marked not reporting after the collector TTL)."""

    def __init__(self, redis_url: str, args) -> None:
        self.changing = args.changing
        self.stopping = args.still == "stopped"
        self.stopped = False
        self.fraction = mp.Value("d", args.changing)
        self.rounds = mp.Value("i", 0)
        self.stop = mp.Event()
        self.procs = [mp.Process(target=writer, args=(
            redis_url, args.hosts, args.containers, args.edges, i, WRITERS,
            self.fraction, self.rounds, self.stop),
            kwargs={"labels": host_labels, "metrics": args.metrics},
            daemon=True) for i in range(WRITERS)]

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def pause(self) -> None:
        if not self.stopping:
            self.fraction.value = 0.0
        elif not self.stopped:
            self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.fraction.value = self.changing
        if self.stopped:
            self.signal(signal.SIGCONT)

    def signal(self, sig: int) -> None:
        for proc in self.procs:
            os.kill(proc.pid, sig)
        self.stopped = sig == signal.SIGSTOP

    def close(self) -> None:
        self.resume()
        self.stop.set()
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()


LONGTASKS_START_JS = """
() => {
  window.__longTasks = [];
  window.__longTaskObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push(e.duration);
  });
  window.__longTaskObserver.observe({ entryTypes: ["longtask"] });
  return window.portolanMap.drawing().diffs;
}
"""
LONGTASKS_STOP_JS = """
() => {
  window.__longTaskObserver.disconnect();
  const tasks = window.__longTasks;
  return { longest: tasks.length ? Math.max(...tasks) : 0, count: tasks.length,
           total: tasks.reduce((a, b) => a + b, 0),
           diffs: window.portolanMap.drawing().diffs };
}
"""


def observed(page, measure_motion, pacing: Pacing | None = None,
             start=None, cdp=None) -> dict:
    """``measure_motion()``'s frames, with the diffs the page applied meanwhile
    and the main thread's longest task (tasks under 50 ms are not reported);
    paced, also the messages handed on and their JSON.parse time. ``start()``
    runs just before the motion (it starts the pace). With ``cdp``, prints
    the page's JavaScript profile of the motion."""
    held = pacing.state() if pacing is not None else None
    before = page.evaluate(LONGTASKS_START_JS)
    if cdp is not None:
        cdp.send("Profiler.start")
    if start is not None:
        start()
    out = measure_motion()
    if cdp is not None:
        print_profile(cdp.send("Profiler.stop")["profile"])
    after = page.evaluate(LONGTASKS_STOP_JS)
    d = after["diffs"]
    out["diffs"] = d["applied"] - before["applied"]
    out["diff_ms"] = d["ms"] - before["ms"]
    out["longest_task"] = after["longest"]
    out["long_tasks"] = after["count"]
    out["long_ms"] = after["total"]
    out["load"] = os.getloadavg()[0]
    if pacing is not None:
        now = pacing.state()
        out["released"] = now["released"] - held["released"]
        out["parse_ms"] = now["parseMs"] - held["parseMs"]
        out["parses"] = now["parses"] - held["parses"]
        out["parse_mb"] = (now["parseChars"] - held["parseChars"]) / 1e6
        out["queued"] = held["queued"]
    return out


def both_ways(page, writers: Writers | None, diffs: str, prepare, run) -> dict:
    """The motion still and/or live: {"still": ..., "live": ...}."""
    out = {}
    for way in ("still", "live"):
        if diffs not in (way, "both") or (way == "live" and writers is None):
            continue
        if writers is not None:
            (writers.resume if way == "live" else writers.pause)()
            page.wait_for_timeout(SETTLE_S * 1000)
        prepare()
        out[way] = observed(page, run)
    return out


def paced_ways(page, pacing: Pacing, paces: list[float], seconds: float,
               prepare, run, cdp=None) -> dict:
    """The motion still (every message held) and at each pace:
    {"still": ..., "paced 1/s": ..., ...}. The writers change the fleet
    throughout; the pace starts with the motion and ends with it."""
    pacing.hold()
    pacing.settle()
    prepare()
    out = {"still": observed(page, run, pacing, cdp=cdp)}
    for per_second in paces:
        need = math.ceil(per_second * seconds) + 1
        queued = pacing.wait_queued(need, QUEUE_TIMEOUT_S)
        if queued < need:
            print(f"only {queued} messages held for {per_second:g}/s "
                  f"({need} wanted)", flush=True)
        pacing.settle()
        prepare()
        out[f"paced {per_second:g}/s"] = observed(
            page, run, pacing, start=lambda p=per_second: pacing.pace(p), cdp=cdp)
        pacing.hold()
    return out


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


PROGRESS_JS = """
() => { const m = window.portolanMap;
        const heap = (performance.memory || {}).usedJSHeapSize;
        return m ? { received: m.received(), marks: m.marks,
                     heapMB: Math.round(heap / 1e6) } : null; }
"""


def wait_for_first_map(page, mode: str, timeout: float = 300) -> None:
    """Until the page drew its whole first map (links too: a fleet's tiles
    come first); says how far it is every 15 s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            page.wait_for_function(WHOLE_MAP_DRAWN_JS, timeout=15_000)
            return
        except PlaywrightTimeout:
            print(f"[{mode}] no map yet: {page.evaluate(PROGRESS_JS)}", flush=True)
            if time.monotonic() > deadline:
                raise


def measure(context, web_url: str, mode: str, seconds: float,
            bundle: Path | None = None, writers: Writers | None = None,
            diffs: str = "both", paces: list[float] | None = None) -> dict:
    page = context.new_page()
    pacing = Pacing(page) if paces else None
    if bundle is not None:
        page.route("**/static/portolan/map.js*", lambda route: route.fulfill(
            path=str(bundle), content_type="application/javascript"))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("crash", lambda: print(f"[{mode}] the page crashed", flush=True))
    load = os.getloadavg()  # the machine is shared: say how busy it was
    lod = "" if mode == "lod" else "&lod=off"
    cdp = None
    profile = os.environ.get("PORTOLAN_PROFILE")
    if profile:
        cdp = context.new_cdp_session(page)
        cdp.send("Profiler.enable")
    if profile and profile != "motions":
        cdp.send("Profiler.start")
    page.goto(f"{web_url}/?level=container{lod}")
    wait_for_first_map(page, mode)
    if profile and profile != "motions":
        print_profile(cdp.send("Profiler.stop")["profile"])
    motions_cdp = cdp if profile == "motions" and pacing is not None else None
    out = {"load": load,
           "first_ms": page.evaluate("() => window.portolanMap.firstDrawMs"),
           "whole_ms": page.evaluate(WHOLE_MAP_MS_JS),
           "marks": page.evaluate("() => window.portolanMap.marks")}
    # Dragging a node would move it: every drag pans the map. A fleet's nodes
    # are not grabbable (livemap.js). (Braces: nothing returned, see above.)
    if mode == "off":
        page.evaluate("() => { window.portolanMap.cy.autoungrabify(true); }")
    page.wait_for_timeout(500)
    out["fit"] = drawing(page)
    fit_view = page.evaluate("() => { const cy = window.portolanMap.cy;"
                             " return { zoom: cy.zoom(), pan: cy.pan() }; }")

    def back_to_fit():
        page.evaluate("(v) => { window.portolanMap.cy.viewport(v); }", fit_view)
        page.wait_for_timeout(300)

    def ways(prepare, run) -> dict:
        if pacing is not None:
            return paced_ways(page, pacing, paces, seconds, prepare, run,
                              motions_cdp)
        return both_ways(page, writers, diffs, prepare, run)

    if pacing is not None:
        # Unmeasured: the first pan after the first map builds Cytoscape's
        # cached picture of the view (0.4-1.4 s tasks), which would land in
        # the first measurement ("still") alone.
        motion(page, "pan", 1.0)
    out["pan_fit"] = ways(back_to_fit, lambda: motion(page, "pan", seconds))
    out["zoom"] = ways(back_to_fit, lambda: zoom_motion(page, seconds))
    back_to_fit()
    page.evaluate(
        f"""() => {{ const cy = window.portolanMap.cy;
                    cy.zoom({{ level: {DETAIL_ZOOM},
                              renderedPosition: {{ x: cy.width() / 2,
                                                   y: cy.height() / 2 }} }}); }}"""
    )
    page.wait_for_timeout(800)
    out["detail"] = drawing(page)
    detail_view = page.evaluate("() => { const cy = window.portolanMap.cy;"
                                " return { zoom: cy.zoom(), pan: cy.pan() }; }")

    def to_detail():
        page.evaluate("(v) => { window.portolanMap.cy.viewport(v); }", detail_view)
        page.wait_for_timeout(300)

    out["pan_detail"] = ways(to_detail, lambda: motion(page, "pan", seconds))
    out["sum_updates"] = drawing(page)["sumUpdates"]
    # The floor: nothing drawn, nothing redrawn (a diff would draw again).
    if pacing is not None:
        pacing.hold()
    elif writers is not None:
        writers.pause()
        page.wait_for_timeout(SETTLE_S * 1000)
    page.evaluate("() => { const cy = window.portolanMap.cy; cy.off('viewport');"
                  " cy.elements().remove(); }")
    page.wait_for_timeout(300)
    out["pan_empty"] = motion(page, "pan", seconds)
    if writers is not None:
        writers.resume()  # the next page loads a changing fleet
    if pacing is not None:
        out["pacing"] = pacing.state()
    out["errors"] = errors
    out["received"] = page.evaluate("() => window.portolanMap.received()")
    page.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 500, 10_000, 50_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--modes", default="lod,off")
    parser.add_argument("--before-bundle", type=Path,
                        help="also measure each mode with this map.js")
    parser.add_argument("--diffs", choices=("both", "live", "still"),
                        default="both",
                        help="measure with the writers still, running, or both")
    parser.add_argument("--still", choices=("quiet", "stopped"), default="quiet",
                        help="still: the hosts report no traffic, or stop (SIGSTOP)")
    parser.add_argument("--metrics", action="store_true",
                        help="the containers' cgroup metrics move every report, "
                        "as a collector's do")
    parser.add_argument("--changing", type=float, default=0.05,
                        help="share of the flows with new traffic each second")
    parser.add_argument("--pace", type=lambda s: [float(x) for x in s.split(",")],
                        help="diffs a second, e.g. 1,4: each motion still, then "
                        "with the page's messages handed on at each pace "
                        "(the writers change the fleet throughout; --diffs ignored)")
    args = parser.parse_args()
    if args.pace:
        args.diffs = "live"
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
    writers = None
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
        if args.diffs != "still":
            writers = Writers(redis_url, args)
            writers.start()
            print(f"{WRITERS} writers reporting every host every second, "
                  f"{args.changing:.0%} of the flows changing", flush=True)
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
                            measure(context, web_url, mode, args.seconds, bundle,
                                    writers, args.diffs, args.pace))
                        report(key, results[key][-1])
            browser.close()
        if writers is not None:
            print(f"writer rounds (both writers: 2 a second when keeping up): "
                  f"{writers.rounds.value}")
        for mode, runs in results.items():
            med = statistics.median
            for way in runs[0]["pan_fit"]:
                print(f"{mode}, {way}: median of {len(runs)}: pan (fit) "
                      f"{med(r['pan_fit'][way]['fps'] for r in runs):.1f} fps, zoom "
                      f"{med(r['zoom'][way]['fps'] for r in runs):.1f} fps, pan "
                      f"(detail) {med(r['pan_detail'][way]['fps'] for r in runs):.1f}"
                      f" fps; longest task {med(longest(r, way) for r in runs):.0f} ms")
            print(f"{mode}: median of {len(runs)}: first map "
                  f"{med(r['first_ms'] for r in runs):.0f} ms, whole "
                  f"{med(r['whole_ms'] for r in runs):.0f} ms, floor "
                  f"{med(r['pan_empty']['fps'] for r in runs):.1f} fps")
    finally:
        if writers is not None:
            writers.close()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def longest(r: dict, way: str) -> float:
    return max(r[k][way]["longest_task"] for k in ("pan_fit", "zoom", "pan_detail"))


def report(mode: str, r: dict) -> None:
    m = r["marks"]
    fps = [(f"{name}, {way}", f) for name, key in (
        ("pan (fit)", "pan_fit"), ("zoom", "zoom"), ("pan (detail)", "pan_detail"))
        for way, f in r[key].items()]
    fps.append(("pan (empty map)", r["pan_empty"]))
    print(f"[{mode}] load average {' '.join(f'{x:.1f}' for x in r['load'])}")
    tiles = (f"tiles drawn at {m['nodesDrawn']:.0f} ms, " if m.get("nodesDrawn")
             else "")
    print(f"[{mode}] first map {r['first_ms']:.0f} ms (goal {GOAL_FIRST_MS}, ratio "
          f"{r['first_ms'] / GOAL_FIRST_MS:.2f}), whole {r['whole_ms']:.0f} ms (ratio "
          f"{r['whole_ms'] / GOAL_FIRST_MS:.2f}): socket open at "
          f"{m.get('opened') or 0:.0f} ms, first snapshot part at "
          f"{m['firstPart']:.0f} ms, {tiles}whole graph in at {m['graphIn']:.0f} ms, "
          f"applied at {m['applied']:.0f} ms, ready at {m['ready']:.0f} ms")
    print(f"[{mode}] drawn at fit: {r['fit']}; at zoom {DETAIL_ZOOM}: {r['detail']}")
    ranges = ", ".join(f"{lo:.3f}-{hi:.3f}" for lo, hi in
                       (f["range"] for f in r["zoom"].values()))
    if "pacing" in r:
        print(f"[{mode}] pacing: {r['pacing']}")
    print(f"[{mode}] zoomed between {ranges}; socket: {r['received']}; tile sums "
          f"moved by diffs {r['sum_updates']} times")
    for name, f in fps:
        line = (f"[{mode}] {name:<22} {f['fps']:5.1f} fps (goal {GOAL_FPS}, ratio "
                f"{f['fps'] / GOAL_FPS:.2f}, p95 frame {f['p95']:.0f} ms)")
        if "diffs" in f:
            line += (f"; {f['diffs']} diffs applied in {f['diff_ms']:.0f} ms, "
                     f"longest task {f['longest_task']:.0f} ms "
                     f"({f['long_tasks']} over 50 ms, {f['long_ms']:.0f} ms); "
                     f"load {f['load']:.1f}")
        if "released" in f:
            per = ((f["diff_ms"] + f["parse_ms"]) / f["diffs"]) if f["diffs"] else 0
            line += (f"; {f['released']} messages handed on ({f['queued']} held), "
                     f"{f['parse_mb']:.1f} MB of JSON parsed in "
                     f"{f['parse_ms']:.0f} ms; "
                     f"{per:.0f} ms a diff")
        print(line)
    if r["errors"]:
        print(f"[{mode}] page errors: {r['errors'][:3]}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
