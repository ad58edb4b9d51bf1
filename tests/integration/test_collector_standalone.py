"""The collector stands alone: ``python -m collector`` from an install without Django.

A fresh virtualenv gets the project installed from a copy of ``collector/`` (no
``webapp/``), and only the distributions ``pyproject.toml`` declares as the base
dependencies (and what they require), linked from this interpreter's own
install rather than downloaded; bcc is linked from Debian's dist-packages as
scripts/venv.sh does. The collector then runs as root, traces with eBPF and
reports to a real Redis.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from collector.schema import HostRecord, Keys

HOST = "standalone-host"
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc")


def base_distributions(pyproject: Path) -> set[str]:
    """Names of the base dependencies and everything they require, recursively."""
    todo = [Requirement(r) for r in
            tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(req.name) or ():
            sub = Requirement(text)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e})
                                         for e in extras):
                todo.append(sub)
    return seen


def link_distribution(name: str, site: Path) -> None:
    """Symlink an installed distribution's top-level files into ``site``."""
    dist = importlib.metadata.distribution(name)
    tops = {f.parts[0] for f in dist.files or ()
            if f.parts[0] not in ("..", "__pycache__")}
    for top in tops:
        source = Path(dist.locate_file(top))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def collector_venv(tmp_path_factory, repo_root) -> Path:
    """A virtualenv holding the collector and its declared dependencies only."""
    root = tmp_path_factory.mktemp("collector-venv")
    venv, src = root / "venv", root / "src"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # Only the collector's sources: a hidden import of webapp fails loudly.
    src.mkdir()
    shutil.copytree(repo_root / "collector", src / "collector",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, src / name)
    # The build backend (setuptools, per pyproject.toml) comes from PyPI, as
    # for scripts/venv.sh; the runtime dependencies do not.
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(src)], check=True, cwd=root)
    for name in base_distributions(repo_root / "pyproject.toml"):
        link_distribution(name, site)
    if DEBIAN_BCC.is_dir():
        (site / "bcc").symlink_to(DEBIAN_BCC)
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would lead Python to the repo."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def test_the_venv_has_no_django_and_runs_the_installed_collector(
        collector_venv, tmp_path):
    python = collector_venv / "bin" / "python"
    django = subprocess.run([python, "-c", "import django"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True)
    assert django.returncode != 0 and "No module named 'django'" in django.stderr
    where = subprocess.run(
        [python, "-c", "import collector, redis, docker; print(collector.__file__)"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(collector_venv))


def test_python_m_collector_reports_in_ebpf_mode_without_django(
        ebpf_ready, collector_venv, redis_client, redis_server, tmp_path):
    var = tmp_path / "var"
    run = subprocess.run(
        [collector_venv / "bin" / "python", "-m", "collector", "--duration", "10"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=clean_env(REDIS_URL=redis_server.url, PORTOLAN_HOST_ID=HOST,
                      PORTOLAN_VAR_DIR=str(var), LOG_LEVEL="INFO"),
    )
    assert run.returncode == 0, run.stderr
    assert f"collector {HOST}: ebpf mode" in run.stderr
    # It configured logging itself (the agent's start line, at INFO).
    assert "portolan.collector: collector standalone-host running in ebpf mode" \
        in run.stderr
    keys = Keys("portolan")
    assert redis_client.zscore(keys.collectors, HOST)
    host = HostRecord.from_json(redis_client.get(keys.host(HOST)))
    assert host.mode == "ebpf" and host.mode_reason == ""
    # Nothing of the web app's: no var/ and no secret key made.
    assert not var.exists() and list(tmp_path.iterdir()) == []


def test_bad_setting_exits_naming_the_variable(collector_venv, tmp_path):
    run = subprocess.run(
        [collector_venv / "bin" / "python", "-m", "collector", "--duration", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=clean_env(PORTOLAN_FLOW_TTL="-1"),
    )
    assert run.returncode == 2
    assert "collector: PORTOLAN_FLOW_TTL must be positive" in run.stderr


def test_ebpf_dump_from_the_installed_package(collector_venv, tmp_path):
    """The BPF sources are installed with the package, not read from the tree."""
    run = subprocess.run(
        [collector_venv / "bin" / "python", "-m", "collector", "--ebpf-dump"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=clean_env(),
    )
    assert run.returncode == 0, run.stderr
    assert "inet_sock_set_state" in run.stdout
