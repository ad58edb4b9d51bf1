"""What every browser test needs: a front end bundle built from today's sources.

A bundle older than ``frontend/src`` would test yesterday's map: the tests
would pass, or fail, on code nobody reads any more. The ``frontend_bundle``
fixture (autouse: each browser module gets it) rebuilds it first.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
BUNDLE = ROOT / "static" / "portolan" / "map.js"
BUILD_INPUTS = ("package.json", "package-lock.json", "build.mjs")


def stale_sources(bundle: Path = BUNDLE) -> list[Path]:
    """The front end's sources newer than ``bundle`` (all of them if it is missing)."""
    sources = [p for p in (FRONTEND / "src").rglob("*") if p.is_file()]
    sources += [FRONTEND / name for name in BUILD_INPUTS
                if (FRONTEND / name).is_file()]
    if not bundle.exists():
        return sources
    built = bundle.stat().st_mtime
    return [p for p in sources if p.stat().st_mtime > built]


def build_frontend() -> None:
    """Run scripts/frontend.sh when a source is newer than the bundle; fail on
    a build error or on a bundle still older than its sources."""
    stale = stale_sources()
    if not stale:
        return
    require(shutil.which("npm") is not None, "npm not installed: cannot build map.js")
    lock_path = ROOT / "artifacts" / "frontend-build.lock"
    lock_path.parent.mkdir(exist_ok=True)
    # Sessions side by side would both write static/portolan/: one at a time.
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stale_sources():
            return
        build = subprocess.run(["bash", "scripts/frontend.sh"], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    names = ", ".join(str(p.relative_to(ROOT)) for p in stale[:5])
    assert build.returncode == 0, (
        f"the front end build failed (sources newer than {BUNDLE.name}: {names}):\n"
        f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    still = stale_sources()
    assert not still, (
        f"after the build, {BUNDLE} is still older than "
        f"{', '.join(str(p.relative_to(ROOT)) for p in still[:5])}")


@pytest.fixture(scope="session", autouse=True)
def frontend_bundle() -> Path:
    """static/portolan/map.js, rebuilt when older than frontend/src."""
    build_frontend()
    return BUNDLE
