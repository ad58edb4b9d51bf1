"""Pure cgroup parsers and the resolver's cache, on recorded text and a fake tree."""

from __future__ import annotations

import os

import pytest

from collector.cgroups import (
    CgroupResolver,
    container_for_proc_cgroup,
    container_id_from_cgroup_path,
    find_cgroup2_mount,
    parse_proc_cgroup,
)

CID = "4f1c2b3a" * 8  # 64 hex digits
POD = "pod8c2f1d3e-1111-2222-3333-444455556666"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{CID}", ("docker", CID)),
        (f"/docker/{CID}/init.scope", ("docker", CID)),
        (f"/system.slice/docker-{CID}.scope", ("docker", CID)),
        (f"/kubepods/besteffort/{POD}/{CID}", ("kubernetes", CID)),
        (f"/kubepods/{POD}/{CID}", ("kubernetes", CID)),
        (
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-{POD.replace('-', '_')}.slice/"
            f"cri-containerd-{CID}.scope",
            ("containerd", CID),
        ),
        (
            f"/kubepods.slice/kubepods-{POD}.slice/crio-{CID}.scope",
            ("crio", CID),
        ),
        (f"/machine.slice/libpod-{CID}.scope", ("podman", CID)),
        (
            "/user.slice/user-1000.slice/user@1000.service/user.slice/"
            f"libpod-{CID}.scope/container",
            ("podman", CID),
        ),
        # CRI-O with the cgroupfs driver, and its monitor.
        (f"/kubepods/besteffort/{POD}/crio-{CID}", ("crio", CID)),
        (f"/kubepods/besteffort/{POD}/crio-conmon-{CID}", ("crio", CID)),
        (f"/crio/crio-{CID}", ("crio", CID)),
        # Podman Quadlet (--cgroups=split), rootful and rootless; pods on cgroupfs.
        (f"/system.slice/nginx.service/libpod-payload-{CID}", ("podman", CID)),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/redis.service/"
         f"libpod-payload-{CID}", ("podman", CID)),
        (f"/libpod_parent/{'b' * 64}/libpod-{CID}", ("podman", CID)),
        # Docker with a cgroupfs cgroup-parent; nerdctl's namespace.
        (f"/actions_job/{CID}", ("container", CID)),
        (f"/default/{CID}", ("container", CID)),
        ("/lxc/web01", ("lxc", "web01")),
        ("/lxc.payload.web01", ("lxc", "web01")),
        ("/lxc.payload.web01/system.slice/sshd.service", ("lxc", "web01")),
        (f"docker/{CID}", ("docker", CID)),
    ],
)
def test_container_paths(path, expected):
    assert container_id_from_cgroup_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/user.slice/user-0.slice/session-1.scope",
        "/system.slice/docker.service",
        "/docker",
        "/docker/notanid",
        f"/docker/{CID[:-1]}",
        "/lxc.monitor.web01",
        f"/libpod_parent/{'b' * 64}",  # a Podman pod, not one of its containers
        "/init.scope",
    ],
)
def test_not_container_paths(path):
    assert container_id_from_cgroup_path(path) is None


V1_AND_V2 = f"""12:pids:/docker/{CID}
11:cpu,cpuacct:/docker/{CID}
4:memory:/docker/{CID}
1:name=systemd:/docker/{CID}
0::/docker/{CID}
"""

V1_ONLY = f"""9:name=systemd:/system.slice/docker-{CID}.scope
8:pids:/system.slice/docker-{CID}.scope
1:cpu:/system.slice/docker-{CID}.scope
"""

HOST = "0::/init.scope\n"


def test_parse_proc_cgroup_v1_and_v2():
    parsed = parse_proc_cgroup(V1_AND_V2)
    assert parsed[""] == f"/docker/{CID}"
    assert parsed["cpu"] == parsed["cpuacct"] == f"/docker/{CID}"
    assert parsed["name=systemd"] == f"/docker/{CID}"


def test_parse_proc_cgroup_skips_garbage():
    assert parse_proc_cgroup("garbage\n\n0::/x\n") == {"": "/x"}


@pytest.mark.parametrize(
    ("text", "expected"), [(V1_AND_V2, CID), (V1_ONLY, CID), (HOST, None), ("", None)]
)
def test_container_for_proc_cgroup(text, expected):
    assert container_for_proc_cgroup(text) == expected


MOUNTINFO_HYBRID = (
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "30 22 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9"
    " - tmpfs tmpfs ro,mode=755\n"
    "31 30 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10"
    " - cgroup2 cgroup2 rw,nsdelegate\n"
    "32 30 0:27 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
)

MOUNTINFO_PURE_V2 = (
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9"
    " - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MOUNTINFO_HYBRID, "/sys/fs/cgroup/unified"),
        (MOUNTINFO_PURE_V2, "/sys/fs/cgroup"),
        ("32 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", None),
        ("41 31 0:38 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n", "/mnt/cg two"),
        ("", None),
    ],
)
def test_find_cgroup2_mount(text, expected):
    assert find_cgroup2_mount(text) == expected


def test_resolver_scans_and_remembers_removed(tmp_path):
    container_dir = tmp_path / "docker" / CID
    container_dir.mkdir(parents=True)
    (tmp_path / "system.slice").mkdir()
    inode = os.stat(container_dir).st_ino
    other = os.stat(tmp_path / "system.slice").st_ino
    resolver = CgroupResolver(root=tmp_path, rescan_interval=0)
    assert resolver.container_for_cgroup_id(inode) == CID
    assert resolver.container_for_cgroup_id(other) is None
    assert resolver.container_for_cgroup_id(0) is None
    container_dir.rmdir()
    # Gone from the tree, still attributed.
    assert resolver.container_for_cgroup_id(inode) == CID


def test_resolver_rescans_on_miss_at_most_once_per_interval(tmp_path):
    resolver = CgroupResolver(root=tmp_path, rescan_interval=3600)
    resolver.scan()
    late = tmp_path / "docker" / CID
    late.mkdir(parents=True)
    # A miss within the interval does not rescan.
    assert resolver.container_for_cgroup_id(os.stat(late).st_ino) is None
    resolver.rescan_interval = 0
    assert resolver.container_for_cgroup_id(os.stat(late).st_ino) == CID


def test_resolver_learns_paths_from_tracer():
    resolver = CgroupResolver(root="/nonexistent", rescan_interval=3600)
    resolver.learn({12345: f"/docker/{CID}", 777: "/system.slice/cron.service"})
    assert resolver.container_for_cgroup_id(12345) == CID
    assert resolver.container_for_cgroup_id(777) is None
    # A later non-container sighting never erases a container attribution.
    resolver.remember(12345, None)
    assert resolver.container_for_cgroup_id(12345) == CID


def test_resolver_container_for_pid(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text(V1_ONLY)
    resolver = CgroupResolver(root=tmp_path, proc=tmp_path)
    assert resolver.container_for_pid(42) == CID
    assert resolver.container_for_pid(43) is None


def test_containers_in_cgroup_tree_finds_every_runtime(tmp_path):
    from collector.cgroups import containers_in_cgroup_tree

    ids = {name: (name[0] * 64) for name in ("a", "b", "c", "d", "e", "f")}
    layout = {
        f"kubepods/besteffort/pod1234/{ids['a']}": "kubernetes",
        f"system.slice/crio-{ids['b']}.scope": "crio",
        f"machine.slice/libpod-{ids['c']}.scope/container": "podman",
        f"system.slice/cri-containerd-{ids['d']}.scope": "containerd",
        "lxc.payload.web1": "lxc",
        "user.slice/user-0.slice": None,
        # A Podman pod on cgroupfs: its container inside, not the pod itself.
        f"libpod_parent/{'9' * 64}/libpod-{ids['e']}": "podman",
        f"system.slice/web.service/libpod-payload-{ids['f']}": "podman",
    }
    for path in layout:
        (tmp_path / path).mkdir(parents=True)
    found = containers_in_cgroup_tree(tmp_path)
    assert found[ids["a"]][0] == "kubernetes"
    assert found[ids["b"]] == ("crio", f"/system.slice/crio-{ids['b']}.scope")
    assert found[ids["c"]] == ("podman", f"/machine.slice/libpod-{ids['c']}.scope")
    assert found[ids["d"]][0] == "containerd"
    assert found["web1"][0] == "lxc"
    assert found[ids["e"]][0] == found[ids["f"]][0] == "podman"
    assert len(found) == 7
    assert containers_in_cgroup_tree(None) == {}


def test_container_cgroup_found_by_id_at_a_known_path_or_by_walk(tmp_path):
    from collector.cgroups import (
        container_cgroup_at_known_path,
        container_cgroup_by_walk,
    )

    top = str(tmp_path)
    (tmp_path / "system.slice" / f"docker-{CID}.scope").mkdir(parents=True)
    assert container_cgroup_at_known_path(top, CID) == \
        f"system.slice/docker-{CID}.scope"
    other = "5" * 64
    pod = tmp_path / "kubepods.slice" / "kubepods-pod1.slice"
    (pod / f"crio-conmon-{other}.scope").mkdir(parents=True)
    assert container_cgroup_at_known_path(top, other) is None
    assert container_cgroup_by_walk(top, other) is None  # only its monitor
    (pod / f"crio-{other}.scope").mkdir()
    assert container_cgroup_by_walk(top, other) == \
        f"kubepods.slice/kubepods-pod1.slice/crio-{other}.scope"
    assert container_cgroup_by_walk(top, other, max_depth=1) is None
    assert container_cgroup_at_known_path("", CID) is None
    assert container_cgroup_by_walk("", CID) is None
