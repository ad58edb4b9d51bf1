"""Helpers of the deploy tests: the README's steps, containers' capabilities."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Bits of <linux/capability.h> for the capabilities the deploy files name.
CAP_BITS = {"SYS_PTRACE": 19, "SYS_ADMIN": 21, "PERFMON": 38, "BPF": 39}
# What a user's checkout holds that the README's deploy steps use.
CHECKOUT = (
    "Dockerfile.collector", "Dockerfile.web", "Dockerfile.redis", ".dockerignore",
    "docker-compose.yml", ".env.example", "README.md", "pyproject.toml",
    "manage.py", "scripts", "collector", "webapp", "templates", "static",
    "frontend", "build", "deploy",
)


def readme_deploy_steps(readme: str) -> list[str]:
    """The shell lines of the first ``sh`` block in the README's Deploy section.

    >>> readme_deploy_steps("## Deploy\\n\\ntext\\n```sh\\na\\nb  # c\\n```\\n## X\\n")
    ['a', 'b  # c']
    """
    section = readme.split("\n## Deploy\n", 1)[-1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line for line in block[1].splitlines() if line.strip()]


def copy_checkout(dest: Path) -> Path:
    """A copy of the parts of this tree a user's checkout has (no .venv, no .git)."""
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for name in CHECKOUT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def cap_mask(names) -> int:
    return sum(1 << CAP_BITS[name] for name in names)


def effective_caps_of(container) -> int:
    """CapEff of a process started in ``container`` (its own set, even with
    ``pid: host``, where /proc/1 is the host's init)."""
    out = container.exec_run(["grep", "CapEff", "/proc/self/status"]).output.decode()
    return int(out.split()[1], 16)


def compose_service(name: str) -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name]


def compose(args: list[str], cwd: Path, env: dict, timeout: float = 300):
    return subprocess.run(["docker-compose", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def kubernetes_documents(directory: Path) -> dict[str, list[dict]]:
    """Every YAML document of each file a kustomization.yaml lists."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return {
        name: [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
        for name in kustomization["resources"]
    }


def docker_run_args(pod_spec: dict, container_name: str, *, env: dict,
                    engine_knows_bpf: bool) -> list[str]:
    """``docker run`` flags that give a container what ``pod_spec`` gives it:
    host namespaces, the security context's capabilities and flags, the
    hostPath volumes at their mount points. ``env`` stands in for envFrom and
    the downward API. Engines before Docker 23 cannot name BPF and PERFMON:
    SYS_ADMIN, which holds both, takes their place (then said by the caller).
    """
    container = next(c for c in pod_spec["containers"] if c["name"] == container_name)
    args = []
    if pod_spec.get("hostPID"):
        args += ["--pid", "host"]
    if pod_spec.get("hostNetwork"):
        args += ["--network", "host"]
    context = container.get("securityContext", {})
    assert not context.get("privileged"), "the collector must not be privileged"
    caps = context.get("capabilities", {})
    for cap in caps.get("drop", []):
        args += ["--cap-drop", cap]
    added = list(caps.get("add", []))
    if not engine_knows_bpf and {"BPF", "PERFMON"} & set(added):
        added = [c for c in added if c not in ("BPF", "PERFMON")] + ["SYS_ADMIN"]
    for cap in added:
        args += ["--cap-add", cap]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if "runAsUser" in context:
        args += ["--user", str(context["runAsUser"])]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod_spec["volumes"]
                  if "hostPath" in v}
    for mount in container.get("volumeMounts", []):
        mode = "ro" if mount.get("readOnly") else "rw"
        args += ["-v", f"{host_paths[mount['name']]}:{mount['mountPath']}:{mode}"]
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    return args
