"""Fixtures of the deploy tests: the images, built once per session.

scripts/images.sh makes the Debian base (cached by its tag in Docker's image
store, which persists between CI runs on this machine) and builds the images;
Docker's layer cache makes a rebuild with nothing changed take seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
TAG = "deploy-test"  # not :latest, so a user's own images are left alone


@pytest.fixture(scope="session")
def deploy_images(docker_client) -> dict[str, str]:
    """Build the base and the images; ``{"base": tag, "collector": tag, ...}``."""
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap not installed")
    require((ROOT / "static/portolan/map.js").exists(),
            "front end not built (scripts/frontend.sh)")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/images.sh")], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "PORTOLAN_IMAGE_TAG": TAG}, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    base, collector, web, redis = done.stdout.split()
    return {"base": base, "collector": collector, "web": web, "redis": redis}
