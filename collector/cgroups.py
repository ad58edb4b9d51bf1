"""Map processes and cgroup ids to containers, and containers to their cgroups.

Everything the collector knows about where runtimes put a container's cgroup
is here: the patterns that recognise one in a path (cgroup path -> container)
and the well-known places and walk that find one by id (container -> cgroup
directory, for the metrics reader in ``cgroup_metrics``).

Pure parsers for cgroup paths, /proc/<pid>/cgroup and /proc/self/mountinfo,
and a small resolver over the cgroup v2 hierarchy. A v2 cgroup id is the inode
number of the cgroup's directory, which is what ``bpf_get_current_cgroup_id()``
returns; the resolver remembers every id it has seen so that a container that
has exited since still attributes its flows.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

__all__ = [
    "KNOWN_CONTAINER_CGROUPS",
    "CgroupResolver",
    "containers_in_cgroup_tree",
    "container_cgroup_at_known_path",
    "container_cgroup_by_walk",
    "container_for_proc_cgroup",
    "container_id_from_cgroup_path",
    "find_cgroup2_mount",
    "parse_proc_cgroup",
]

log = logging.getLogger("portolan.collector.cgroups")

_HEX64 = r"[0-9a-f]{64}"

# (runtime, pattern) in the order tried; the container id is group "id".
# Scope units may be nested (systemd driver puts the container's processes in
# <scope>/... for some runtimes), so patterns match anywhere in the path.
_PATTERNS = (
    ("docker", re.compile(rf"/docker-(?P<id>{_HEX64})\.scope(?:/|$)")),
    ("containerd", re.compile(rf"/cri-containerd-(?P<id>{_HEX64})\.scope(?:/|$)")),
    # CRI-O: systemd driver crio-<id>.scope, cgroupfs driver crio-<id>.
    ("crio", re.compile(rf"/crio-(?:conmon-)?(?P<id>{_HEX64})(?:\.scope)?(?:/|$)")),
    # Podman: libpod-<id>.scope (systemd), libpod-<id> in a pod's cgroupfs
    # parent, libpod-payload-<id> for Quadlet units (--cgroups=split).
    ("podman", re.compile(
        rf"/libpod-(?:conmon-|payload-)?(?P<id>{_HEX64})(?:\.scope)?(?:/|$)")),
    ("docker", re.compile(rf"/docker/(?P<id>{_HEX64})(?:/|$)")),
    # cgroupfs-driver Kubernetes: /kubepods/<qos>/pod<uid>/<id>
    (
        "kubernetes",
        re.compile(rf"/kubepods[^/]*(?:/[^/]+)*?/pod[^/]+/(?P<id>{_HEX64})(?:/|$)"),
    ),
    ("lxc", re.compile(r"/lxc\.payload\.(?P<id>[^/]+)(?:/|$)")),
    ("lxc", re.compile(r"^/lxc/(?P<id>[^/]+)(?:/|$)")),
    # Last: a 64-hex directory is a container id whatever parent put it there
    # (Docker's cgroup-parent, nerdctl's namespaces...); not a Podman pod's
    # own cgroup, whose containers are libpod-<id> inside it.
    ("container", re.compile(rf"^(?!/libpod_parent/).*?/(?P<id>{_HEX64})(?:/|$)")),
)


# Where runtimes put a container's cgroup, relative to a hierarchy's root, in
# the order tried before any walk; "{id}" is the container id.
KNOWN_CONTAINER_CGROUPS = (
    "docker/{id}",
    "system.slice/docker-{id}.scope",
    "machine.slice/libpod-{id}.scope",
    "libpod_parent/libpod-{id}",
    "system.slice/crio-{id}.scope",
    "system.slice/cri-containerd-{id}.scope",
    "system.slice/nerdctl-{id}.scope",
    "lxc.payload.{id}",
    "lxc/{id}",
)


def container_id_from_cgroup_path(path: str) -> tuple[str, str] | None:
    """The (runtime, container id) a cgroup path belongs to, or None.

    >>> container_id_from_cgroup_path("/docker/" + "a" * 64)
    ('docker', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')
    """
    if not path:
        return None
    if not path.startswith("/"):
        path = "/" + path
    for runtime, pattern in _PATTERNS:
        match = pattern.search(path)
        if match:
            return runtime, match.group("id")
    return None


def containers_in_cgroup_tree(root: str | os.PathLike | None,
                              max_depth: int = 8) -> dict[str, tuple[str, str]]:
    """Container id -> (runtime, cgroup path) for every container cgroup under
    ``root`` (a cgroup v2 mount), whatever runtime made it: the containers that
    no runtime API is asked about still show, by id and cgroup.
    """
    found: dict[str, tuple[str, str]] = {}
    if root is None:
        return found
    root = os.fspath(root)
    base_depth = root.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, _files in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root).replace(os.sep, "/")
        match = container_id_from_cgroup_path(rel) if rel != "/." else None
        if match:
            runtime, cid = match
            found.setdefault(cid, (runtime, rel))
            dirnames.clear()  # a container's own sub-cgroups are the same one
        elif dirpath.count(os.sep) - base_depth >= max_depth:
            dirnames.clear()
    return found


def container_cgroup_at_known_path(top: str, container_id: str) -> str | None:
    """The container's cgroup relative to ``top`` if it is at a well-known place
    (:data:`KNOWN_CONTAINER_CGROUPS`), else None."""
    if not top:
        return None
    for template in KNOWN_CONTAINER_CGROUPS:
        rel = template.format(id=container_id)
        if os.path.isdir(os.path.join(top, rel)):
            return rel
    return None


def container_cgroup_by_walk(top: str, container_id: str,
                             max_depth: int = 6) -> str | None:
    """Relative path of a directory under ``top`` named after the container,
    breadth first, or None: the layouts no well-known path covers.

    CRI-O's and Podman's monitor cgroups (``...conmon-<id>...``) carry the same
    id but hold the monitor, not the container, so they are passed over.
    """
    if not top:
        return None
    level = [top]
    for _ in range(max_depth):
        following = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if container_id in entry.name and "conmon" not in entry.name:
                    return os.path.relpath(entry.path, top)
                following.append(entry.path)
        level = following
        if not level:
            break
    return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/cgroup: controller -> path; the v2 line is under "".

    Named v1 hierarchies keep their ``name=`` prefix; a line listing several
    controllers (``cpu,cpuacct``) is entered once per controller.

    >>> parse_proc_cgroup("0::/docker/x\\n4:cpu,cpuacct:/y\\n")
    {'': '/docker/x', 'cpu': '/y', 'cpuacct': '/y'}
    """
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            result[""] = path
            continue
        for controller in controllers.split(","):
            result[controller] = path
    return result


def find_cgroup2_mount(mountinfo_text: str) -> str | None:
    """The mount point of the cgroup2 hierarchy in a mountinfo text, or None.

    >>> find_cgroup2_mount("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw")
    '/sys/fs/cgroup'
    """
    for line in mountinfo_text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        fstype = right.split()[0] if right.split() else ""
        if fstype == "cgroup2" and len(fields) >= 5:
            # Mount points escape spaces and friends as octal.
            return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
    return None


def container_for_proc_cgroup(text: str) -> str | None:
    """The container id in a /proc/<pid>/cgroup text (v2 line first, then v1)."""
    parsed = parse_proc_cgroup(text)
    paths = ([parsed[""]] if "" in parsed else []) + [
        path for controller, path in parsed.items() if controller
    ]
    # v1 controllers mostly share one path: try each path once.
    for path in dict.fromkeys(paths):
        found = container_id_from_cgroup_path(path)
        if found:
            return found[1]
    return None


class CgroupResolver:
    """Resolve v2 cgroup ids and pids to container ids, remembering the past."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        proc: str | os.PathLike = "/proc",
        rescan_interval: float = 1.0,
    ):
        self.root = Path(root) if root else self._default_root(proc)
        self.proc = Path(proc)
        self.rescan_interval = rescan_interval
        # cgroup id -> container id or None (a known non-container cgroup).
        self._ids: dict[int, str | None] = {}
        self._last_scan = float("-inf")

    @staticmethod
    def _default_root(proc) -> Path | None:
        try:
            text = Path(proc, "self", "mountinfo").read_text()
        except OSError:
            return None
        mount = find_cgroup2_mount(text)
        return Path(mount) if mount else None

    def scan(self) -> None:
        """Walk the v2 hierarchy once and remember every cgroup id -> container."""
        self._last_scan = time.monotonic()
        if self.root is None:
            return
        root = str(self.root)
        for dirpath, _dirnames, _files in os.walk(root):
            try:
                inode = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = "/" + os.path.relpath(dirpath, root).replace(os.sep, "/")
            if rel == "/.":
                rel = "/"
            found = container_id_from_cgroup_path(rel)
            # Never forget a container: an id once attributed stays so.
            if found or inode not in self._ids:
                self._ids[inode] = found[1] if found else None

    def container_for_cgroup_id(self, cgroup_id: int) -> str | None:
        """The container whose v2 cgroup has this id (inode), or None."""
        if not cgroup_id:
            return None
        if cgroup_id in self._ids:
            return self._ids[cgroup_id]
        if time.monotonic() - self._last_scan >= self.rescan_interval:
            self.scan()
        return self._ids.get(cgroup_id)

    def learn(self, cgroups: dict[int, str]) -> None:
        """Record v2 cgroup id -> path pairs (from the tracer's cgroup_mkdir hook)."""
        for cgroup_id, path in cgroups.items():
            found = container_id_from_cgroup_path(path)
            self.remember(cgroup_id, found[1] if found else None)

    def remember(self, cgroup_id: int, container_id: str | None) -> None:
        """Record an attribution learned elsewhere (e.g. from a pid)."""
        if cgroup_id and (container_id or cgroup_id not in self._ids):
            self._ids[cgroup_id] = container_id

    def container_for_pid(self, pid: int) -> str | None:
        """The container a live process belongs to, via /proc/<pid>/cgroup."""
        try:
            text = Path(self.proc, str(int(pid)), "cgroup").read_text()
        except (OSError, ValueError):
            return None
        return container_for_proc_cgroup(text)
