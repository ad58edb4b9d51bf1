"""The images: a base made here from Debian's packages, and the images on it."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.docker


def run_in(image: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", image, *command],
                          capture_output=True, text=True, timeout=120)


def test_the_base_is_made_locally_not_pulled(docker_client, deploy_images):
    base = docker_client.images.get(deploy_images["base"])
    assert base.attrs["RepoDigests"] == []  # never came from a registry
    assert deploy_images["base"].startswith("portolan/debian-base:12-")
    release = run_in(deploy_images["base"], "cat", "/etc/debian_version").stdout
    assert release.startswith("12.")
    for name in ("collector", "web", "redis"):
        layers = docker_client.images.get(deploy_images[name]).attrs["RootFS"]["Layers"]
        assert layers[0] == base.attrs["RootFS"]["Layers"][0], name


def test_the_collector_image_has_bcc_and_no_django(deploy_images):
    image = deploy_images["collector"]
    probe = run_in(image, "python", "-c",
                   "import bcc, docker, redis, collector.runner; print('ok')")
    assert probe.stdout.strip() == "ok", probe.stderr
    django = run_in(image, "python", "-c", "import django")
    assert "No module named 'django'" in django.stderr
    # No kernel headers baked in: they are mounted from the host.
    assert run_in(image, "ls", "/usr/src").stdout.strip() == ""


def test_the_web_image_serves_the_built_front_end(deploy_images):
    image = deploy_images["web"]
    probe = run_in(image, "python", "-c",
                   "import daphne, channels, django, webapp.asgi; print('ok')")
    # webapp.asgi needs settings; importing it with the defaults must work.
    assert probe.stdout.strip() == "ok", probe.stderr
    assert run_in(image, "test", "-s", "static/portolan/map.js").returncode == 0
    assert run_in(image, "id", "-u").stdout.strip() == "10001"  # not root


def test_image_sizes(docker_client, deploy_images):
    """Prints the sizes (BENCHMARKS.md records them); bounds catch a regression."""
    sizes = {name: docker_client.images.get(tag).attrs["Size"] / 1e6
             for name, tag in deploy_images.items()}
    print({name: f"{mb:.0f} MB" for name, mb in sizes.items()})
    assert sizes["base"] < 100
    assert sizes["web"] < 300
    assert sizes["collector"] < 500
