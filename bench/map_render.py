"""Map render: time to the first drawn map, and frames per second while panning
and zooming, for a synthetic 2,000-container map in headless Chromium.

Starts its own redis-server, Daphne (temporary database) and graph builder,
writes the world with bench/synthetic_world.py, logs in with Playwright and
opens the container level once per renderer (``?renderer=``, see frontend/src/map.js):

- ``canvas``: Cytoscape's canvas renderer, as shipped;
- ``fast``: canvas, edges hidden and a texture used while the viewport moves;
- ``webgl``: Cytoscape's experimental WebGL renderer (3.31+).

    .venv/bin/python bench/map_render.py [--hosts 50] [--containers 2000]
                                         [--edges 4000] [--seconds 3]

Goals (issue 6): first map under 2 s, pan at 30 fps or better.
With PORTOLAN_SCREENSHOTS=DIR it saves each first map as a PNG there.
With PORTOLAN_PROFILE=1 it also prints the page's JavaScript self time per
function up to the first drawn map (a CDP CPU profile).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic_world import make_world, world_size_arguments, write_world  # noqa: E402

from tests.conftest import RedisServer, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--disable-component-update", "--disable-sync",
]
USER, PASSWORD = "bench", "bench-password-1"
RENDERERS = ("canvas", "fast", "webgl")

# Whether the page drew its whole first map, and when (ms since navigation):
# a fleet's tiles come before its links (``firstDrawMs``), the whole map
# once they are in (``wholeDrawMs``); a bundle from before that (an older
# commit's, ``--before-bundle``) has no wholeDrawMs and draws it at once.
WHOLE_MAP_DRAWN_JS = """() => { const m = window.portolanMap;
  if (!m) return false;
  return (m.wholeDrawMs === undefined ? m.firstDrawMs : m.wholeDrawMs) !== null; }"""
WHOLE_MAP_MS_JS = """() => { const m = window.portolanMap;
  return m.wholeDrawMs ?? m.firstDrawMs; }"""

# Counts the frames the page shows until stopped; the motion itself is real
# mouse input (drag to pan, wheel to zoom), because Cytoscape's viewport
# shortcuts (textureOnViewport, hideEdgesOnViewport) apply to gestures only.
COUNT_START_JS = """
() => {
  const c = { frames: 0, start: performance.now(), gaps: [], last: performance.now(),
              running: true };
  window.__frameCount = c;
  const step = (now) => {
    c.frames += 1; c.gaps.push(now - c.last); c.last = now;
    if (c.running) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}
"""
COUNT_STOP_JS = """
() => {
  const c = window.__frameCount;
  c.running = false;
  const elapsed = performance.now() - c.start;
  const gaps = c.gaps.slice(1).sort((a, b) => a - b);
  return { fps: c.frames / (elapsed / 1000),
           p95: gaps[Math.floor(gaps.length * 0.95)] || 0 };
}
"""


def motion(page, kind: str, seconds: float) -> dict:
    """Pan by dragging, or zoom in and out with the wheel, for ``seconds``."""
    x, y = 640, 460
    page.mouse.move(x, y)
    page.evaluate(COUNT_START_JS)
    deadline = time.monotonic() + seconds
    i = 0
    if kind == "pan":
        page.mouse.down()
        while time.monotonic() < deadline:
            i += 1
            dx = 120 * (1 if (i // 30) % 2 == 0 else -1)
            page.mouse.move(x + dx * ((i % 30) / 30), y + 40 * ((i % 30) / 30))
        page.mouse.up()
    else:
        while time.monotonic() < deadline:
            i += 1
            page.mouse.wheel(0, -60 if (i // 20) % 2 == 0 else 60)
            page.wait_for_timeout(8)
    return page.evaluate(COUNT_STOP_JS)


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


def start_stack(tmp: Path) -> tuple[list[subprocess.Popen], str, str]:
    """redis-server, Daphne and the graph builder on free loopback ports;
    returns (procs, redis, web)."""
    redis_server = RedisServer()
    redis_server.start()
    redis_proc, redis_url = redis_server.proc, redis_server.url
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "REDIS_URL": redis_url, "DATABASE_PATH": str(tmp / "db.sqlite3"),
        "PORTOLAN_VAR_DIR": str(tmp / "var"), "DEBUG": "false",
        "DJANGO_SUPERUSER_USERNAME": USER, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "bench@example.invalid",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput"], ["createsuperuser", "--noinput"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    web_port = free_port()
    log = open(tmp / "daphne.log", "wb")  # noqa: SIM115
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p",
         str(web_port), "webapp.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    # The graph builder: Daphne only relays what it publishes.
    builder = subprocess.Popen([*manage, "builder"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    web_url = f"http://127.0.0.1:{web_port}"
    if not wait(lambda: healthy(web_url), 30):
        raise RuntimeError(f"Daphne did not start: {(tmp / 'daphne.log').read_text()}")
    return [web, builder, redis_proc], redis_url, web_url


def print_profile(profile: dict, top: int = 15) -> None:
    """Self time per function of a CDP CPU profile, largest first."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    self_ms: dict[str, float] = {}
    for sample, delta in zip(profile.get("samples", []), deltas, strict=False):
        frame = nodes[sample]["callFrame"]
        name = (f"{frame['functionName'] or '(anon)'} "
                f"{frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber']}")
        self_ms[name] = self_ms.get(name, 0.0) + delta / 1000
    for name, ms in sorted(self_ms.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {ms:8.1f} ms  {name}")


def measure(context, web_url: str, renderer: str, level: str, seconds: float,
            runs: int) -> dict:
    first, pans, zooms, p95 = [], [], [], []
    for _ in range(runs):
        page = context.new_page()
        messages = []
        page.on("console", lambda m, out=messages: out.append(m.text))
        page.on("pageerror", lambda e, out=messages: out.append(f"error: {e}"))
        cdp = None
        if os.environ.get("PORTOLAN_PROFILE"):
            cdp = context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.start")
        page.goto(f"{web_url}/?level={level}&renderer={renderer}")
        try:
            page.wait_for_function(WHOLE_MAP_DRAWN_JS, timeout=120_000)
        except Exception:
            print("no map drawn; page said:", messages[-10:], page.evaluate(
                "() => location.href + ' ' + document.body.innerText.slice(0, 300)"))
            raise
        first.append(page.evaluate(WHOLE_MAP_MS_JS))
        if os.environ.get("PORTOLAN_SCREENSHOTS"):
            out = Path(os.environ["PORTOLAN_SCREENSHOTS"])
            out.mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"render-{level}-{renderer}.png"))
        if cdp is not None:
            print_profile(cdp.send("Profiler.stop")["profile"])
        marks = page.evaluate("() => window.portolanMap.marks")
        print(f"  {level} {renderer}: first snapshot part at "
              f"{marks['firstPart']:.0f} ms, whole graph in at "
              f"{marks['graphIn']:.0f} ms, applied and laid out at "
              f"{marks['applied']:.0f} ms, panel and filters at "
              f"{marks['ready']:.0f} ms, drawn at {first[-1]:.0f} ms", flush=True)
        nodes = page.evaluate("() => window.portolanMap.cy.nodes().length")
        edges = page.evaluate("() => window.portolanMap.edgeCount()")
        # Dragging a node would move it: make every drag pan the map.
        page.evaluate("() => { const cy = window.portolanMap.cy; cy.fit();"
                      " cy.autoungrabify(true); }")
        page.wait_for_timeout(300)
        pan = motion(page, "pan", seconds)
        zoom = motion(page, "zoom", seconds)
        pans.append(pan["fps"])
        zooms.append(zoom["fps"])
        p95.append(pan["p95"])
        webgl = any("webgl" in m.lower() for m in messages)
        page.close()
    return {
        "first_ms": statistics.median(first), "pan_fps": statistics.median(pans),
        "zoom_fps": statistics.median(zooms), "pan_p95_ms": statistics.median(p95),
        "nodes": nodes, "edges": edges, "webgl_log": webgl,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_size_arguments(parser, 50, 2_000, 4_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--renderers", default=",".join(RENDERERS))
    parser.add_argument("--levels", default="container,host")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    subprocess.run(["bash", str(ROOT / "scripts/frontend.sh")], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="portolan-bench-"))
    procs, redis_url, web_url = start_stack(tmp)
    try:
        world = make_world(args.hosts, args.containers, args.edges)
        flows = write_world(world, redis_url)
        print(f"world: {args.hosts} hosts, "
              f"{sum(map(len, world.containers.values()))} containers, {flows} flows")
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
            results = {}
            for level in args.levels.split(","):
                for renderer in args.renderers.split(","):
                    # Keep the collectors' keys alive (their TTL is 30 s).
                    write_world(world, redis_url)
                    r = measure(context, web_url, renderer, level, args.seconds,
                                args.runs)
                    results[(level, renderer)] = r
                    print(
                        f"{level:<9} {renderer:<6} {r['nodes']:5d} nodes "
                        f"{r['edges']:5d} edges | first map {r['first_ms']:7.0f} ms "
                        f"(goal 2000, ratio {r['first_ms'] / 2000:.2f}) | pan "
                        f"{r['pan_fps']:5.1f} fps (goal 30, ratio "
                        f"{r['pan_fps'] / 30:.2f}, p95 frame {r['pan_p95_ms']:.0f} ms)"
                        f" | zoom {r['zoom_fps']:5.1f} fps"
                        f"{' | WebGL on' if r['webgl_log'] else ''}",
                        flush=True,
                    )
            browser.close()
        base = results.get(("container", "canvas"))
        if base:
            for (level, renderer), r in results.items():
                if level == "container" and renderer != "canvas":
                    print(f"{renderer} vs canvas (container level): pan "
                          f"{r['pan_fps'] / max(base['pan_fps'], 1e-9):.2f}x, "
                          f"first map {r['first_ms'] / base['first_ms']:.2f}x")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
