"""cgroup v1/v2 metric parsers and the reader, on recorded text and file trees.

The v2 trees are recorded from real hosts (values trimmed) and laid out under
``tmp_path`` in the layouts the reader must find: Docker with the cgroupfs
driver (``/docker/<id>``), Docker with systemd (``docker-<id>.scope``),
containerd/CRI-O under Kubernetes, Podman. The v1 tree mirrors this machine's
hybrid layout (one hierarchy per controller plus a controller-less
``unified``), with ``cpu,cpuacct`` joined as on most distributions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from collector.cgroup_metrics import (
    CgroupMetricsReader,
    ContainerMetrics,
    cfs_quota_cores,
    cpu_cores,
    cpu_percent_of_limit,
    detect_layout,
    parse_blkio,
    parse_cpu_max,
    parse_flat_keyed,
    parse_io_stat,
    parse_limit,
    read_container_metrics,
)
from collector.container_metrics import MetricsSampler
from collector.netns_metrics import InterfaceStats, parse_net_dev, read_net_dev, total
from collector.services import (
    ListeningCache,
    ServiceRecord,
    _read_listeners,
    listening_sockets,
    parse_passwd,
    parse_status_uid,
    process_services,
    services_for_pids,
)

CID = "4f1c2b3a" * 8
CID2 = "0123abcd" * 8
CID3 = "deadbeef" * 8
CID4 = "a1b2c3d4" * 8

# ------------------------------------------------------------ recorded v2 text

V2_CPU_STAT = """usage_usec 2503781
user_usec 1800000
system_usec 703781
core_sched.force_idle_usec 0
nr_periods 120
nr_throttled 17
throttled_usec 456789
nr_bursts 0
burst_usec 0
"""

V2_MEMORY_STAT = """anon 9437184
file 4194304
kernel 1048576
kernel_stack 98304
sock 0
shmem 0
file_mapped 0
active_anon 9433088
inactive_anon 4096
active_file 1048576
inactive_file 3145728
unevictable 0
pgfault 4411
pgmajfault 0
"""

V2_MEMORY_EVENTS = """low 0
high 0
max 42
oom 3
oom_kill 2
oom_group_kill 0
"""

V2_IO_STAT = """8:0 rbytes=1048576 wbytes=4096 rios=16 wios=1 dbytes=0 dios=0
259:0 rbytes=2048 wbytes=8192 rios=2 wios=3 dbytes=0 dios=0
"""

V2_FILES = {
    "cpu.stat": V2_CPU_STAT,
    "cpu.max": "150000 100000\n",
    "memory.current": "14680064\n",
    "memory.max": "268435456\n",
    "memory.stat": V2_MEMORY_STAT,
    "memory.events": V2_MEMORY_EVENTS,
    "io.stat": V2_IO_STAT,
    "pids.current": "7\n",
    "pids.max": "max\n",
    "cgroup.procs": "4242\n4250\n",
}

# ------------------------------------------------------------ recorded v1 text

V1_CPU_STAT = """nr_periods 3
nr_throttled 1
throttled_time 123456789
nr_bursts 0
burst_time 0
"""

V1_MEMORY_STAT = """cache 2097152
rss 49152
inactive_file 1048576
total_cache 2097152
total_rss 49152
total_inactive_anon 45056
total_active_anon 4096
total_inactive_file 2000000
total_active_file 97152
hierarchical_memory_limit 67108864
"""

V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"

V1_IO_SERVICE_BYTES = """8:0 Read 8192
8:0 Write 4096
8:0 Sync 12288
8:0 Async 0
8:0 Discard 0
8:0 Total 12288
8:16 Read 100
8:16 Write 0
8:16 Total 100
Total 12388
"""

V1_IO_SERVICED = """8:0 Read 2
8:0 Write 1
8:0 Total 3
Total 3
"""

V1_FILES = {
    "cpu,cpuacct": {
        "cpuacct.usage": "17963197\n",
        "cpu.stat": V1_CPU_STAT,
        "cpu.cfs_quota_us": "50000\n",
        "cpu.cfs_period_us": "100000\n",
        "cgroup.procs": "4242\n",
    },
    "memory": {
        "memory.usage_in_bytes": "3000000\n",
        "memory.limit_in_bytes": "67108864\n",
        "memory.stat": V1_MEMORY_STAT,
        "memory.oom_control": V1_OOM_CONTROL,
        "cgroup.procs": "4242\n",
    },
    "blkio": {
        "blkio.throttle.io_service_bytes_recursive": V1_IO_SERVICE_BYTES,
        "blkio.throttle.io_serviced_recursive": V1_IO_SERVICED,
        "cgroup.procs": "4242\n",
    },
    "pids": {"pids.current": "1\n", "pids.max": "max\n", "cgroup.procs": "4242\n"},
}


def write_tree(base, files: dict[str, str]) -> None:
    os.makedirs(base, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(base, name), "w") as f:
            f.write(text)


def make_v2_root(tmp_path):
    root = tmp_path / "cgroup2"
    write_tree(root, {"cgroup.controllers": "cpuset cpu io memory pids\n"})
    return root


def make_v1_root(tmp_path, rel: str, symlinks: bool = True):
    root = tmp_path / "cgroup1"
    for hierarchy, files in V1_FILES.items():
        write_tree(root / hierarchy / rel, files)
    # This machine's hybrid layout: a controller-less v2 tree alongside.
    write_tree(root / "unified" / rel, {"cpu.stat": "usage_usec 1\n"})
    write_tree(root / "unified", {"cgroup.controllers": ""})
    if symlinks:  # what systemd adds next to a joined mount
        os.symlink("cpu,cpuacct", root / "cpu")
        os.symlink("cpu,cpuacct", root / "cpuacct")
    return root


# ------------------------------------------------------------ pure parsers


def test_parse_flat_keyed():
    assert parse_flat_keyed(V2_CPU_STAT)["throttled_usec"] == 456789
    assert parse_flat_keyed(V2_MEMORY_EVENTS)["oom_kill"] == 2
    assert parse_flat_keyed(V1_OOM_CONTROL)["oom_kill"] == 1
    assert parse_flat_keyed(None) == {}
    assert parse_flat_keyed("garbage\nkey notanumber\n") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),
        ("268435456\n", 268435456),
        ("9223372036854771712\n", None),  # v1 "unlimited"
        ("-1\n", None),
        ("", None),
        (None, None),
        ("junk", None),
    ],
)
def test_parse_limit(text, expected):
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("150000 100000\n", 1.5),
        ("50000 100000", 0.5),
        ("max 100000\n", None),
        ("25000\n", 0.25),  # period omitted: the kernel default
        ("", None),
        (None, None),
    ],
)
def test_parse_cpu_max(text, expected):
    assert parse_cpu_max(text) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        ("50000\n", "100000\n", 0.5),
        ("-1\n", "100000\n", None),
        ("200000", "50000", 4.0),
        (None, "100000", None),
        ("x", "100000", None),
    ],
)
def test_cfs_quota_cores(quota, period, expected):
    assert cfs_quota_cores(quota, period) == expected


def test_parse_io_stat_sums_devices():
    assert parse_io_stat(V2_IO_STAT) == {
        "rbytes": 1048576 + 2048,
        "wbytes": 4096 + 8192,
        "rios": 18,
        "wios": 4,
    }
    assert parse_io_stat(None) == {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    assert parse_io_stat("8:0 rbytes=oops wbytes=5\n")["wbytes"] == 5


def test_parse_blkio_ignores_total_line():
    assert parse_blkio(V1_IO_SERVICE_BYTES) == (8292, 4096)
    assert parse_blkio(V1_IO_SERVICED) == (2, 1)
    assert parse_blkio("Total 0\n") == (0, 0)
    assert parse_blkio(None) == (0, 0)


@pytest.mark.parametrize(
    ("prev", "cur", "dt", "expected"),
    [
        (0, 2_000_000_000, 1.0, 2.0),
        (1_000_000_000, 1_250_000_000, 0.5, 0.5),
        (5_000_000_000, 1_000, 1.0, 0.0),  # reset: a new cgroup
        (0, 1_000, 0.0, 0.0),
        (0, 1_000, -1.0, 0.0),
    ],
)
def test_cpu_cores(prev, cur, dt, expected):
    assert cpu_cores(prev, cur, dt) == pytest.approx(expected)


def test_cpu_cores_accepts_metrics_records():
    a = ContainerMetrics("c", 2, 0.0, cpu_usage_ns=1_000_000_000)
    b = ContainerMetrics("c", 2, 2.0, cpu_usage_ns=2_000_000_000)
    assert cpu_cores(a, b, 2.0) == pytest.approx(0.5)


def test_cpu_percent_of_limit():
    assert cpu_percent_of_limit(0.75, 1.5) == pytest.approx(50.0)
    assert cpu_percent_of_limit(0.75, None) is None
    assert cpu_percent_of_limit(0.75, 0.0) is None


# ------------------------------------------------------------ v2 file trees

V2_LAYOUTS = [
    pytest.param(f"docker/{CID}", id="docker-cgroupfs"),
    pytest.param(f"system.slice/docker-{CID}.scope", id="docker-systemd"),
    pytest.param(f"machine.slice/libpod-{CID}.scope", id="podman"),
    pytest.param(
        "kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod8c2f1d3e_1111_2222_3333_444455556666.slice/"
        f"cri-containerd-{CID}.scope",
        id="k8s-containerd-systemd",
    ),
    pytest.param(
        f"kubepods/besteffort/pod8c2f1d3e-1111-2222-3333-444455556666/{CID}",
        id="k8s-cgroupfs",
    ),
    pytest.param(f"kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope", id="k8s-crio"),
    pytest.param(
        f"user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope",
        id="podman-rootless",
    ),
]


@pytest.mark.parametrize("rel", V2_LAYOUTS)
def test_v2_tree_reads_every_metric(tmp_path, rel):
    root = make_v2_root(tmp_path)
    write_tree(root / rel, V2_FILES)
    reader = CgroupMetricsReader(root, proc=tmp_path / "noproc")
    assert reader.version == 2
    paths = reader.locate(CID)
    assert paths is not None and paths.procs_dir == str(root / rel)
    m = reader.read(CID)
    assert m is not None
    assert m.cgroup_version == 2
    assert m.cpu_usage_ns == 2503781000
    assert m.cpu_limit_cores == 1.5
    assert (m.cpu_periods, m.cpu_throttled_periods) == (120, 17)
    assert m.cpu_throttled_ns == 456789000
    assert m.memory_usage_bytes == 14680064
    assert m.memory_working_set_bytes == 14680064 - 3145728
    assert m.memory_limit_bytes == 268435456
    assert m.memory_oom_kills == 2
    assert (m.io_read_bytes, m.io_write_bytes) == (1050624, 12288)
    assert (m.io_read_ops, m.io_write_ops) == (18, 4)
    assert m.pids == 7 and m.pids_limit is None
    d = m.to_dict()
    assert d["container_id"] == CID and d["memory_oom_kills"] == 2


def test_v2_two_containers_in_two_layouts(tmp_path):
    root = make_v2_root(tmp_path)
    write_tree(root / "docker" / CID, V2_FILES)
    write_tree(
        root / "system.slice" / f"docker-{CID2}.scope",
        {**V2_FILES, "cpu.stat": "usage_usec 10\n", "memory.max": "max\n"},
    )
    reader = CgroupMetricsReader(root)
    a, b = reader.read(CID), reader.read(CID2)
    assert a.cpu_usage_ns == 2503781000 and a.memory_limit_bytes == 268435456
    assert b.cpu_usage_ns == 10000 and b.memory_limit_bytes is None
    assert b.cpu_periods == 0  # no quota: no periods line


def test_v2_missing_optional_files_give_defaults(tmp_path):
    """Controllers not enabled for the subtree (no io, no pids) read as 0/None."""
    root = make_v2_root(tmp_path)
    write_tree(root / "docker" / CID, {"cpu.stat": "usage_usec 5\n"})
    m = CgroupMetricsReader(root).read(CID)
    assert m is not None
    assert m.cpu_usage_ns == 5000
    assert m.cpu_limit_cores is None
    assert m.memory_usage_bytes == 0 and m.memory_limit_bytes is None
    assert m.io_read_bytes == 0 and m.pids == 0


def test_v2_vanished_cgroup_returns_none(tmp_path):
    root = make_v2_root(tmp_path)
    write_tree(root / "docker" / CID, V2_FILES)
    reader = CgroupMetricsReader(root)
    assert reader.read(CID) is not None
    shutil.rmtree(root / "docker" / CID)
    assert reader.read(CID) is None
    assert reader.read(CID2) is None
    assert read_container_metrics(CID, root=root) is None


def test_v2_restarted_container_is_found_in_its_new_cgroup(tmp_path):
    root = make_v2_root(tmp_path)
    write_tree(root / "docker" / CID, V2_FILES)
    reader = CgroupMetricsReader(root)
    assert reader.read(CID) is not None
    shutil.rmtree(root / "docker" / CID)
    assert reader.read(CID) is None
    write_tree(root / "docker" / CID, {**V2_FILES, "cpu.stat": "usage_usec 1\n"})
    assert reader.read(CID).cpu_usage_ns == 1000


def test_v2_locate_through_init_pid(tmp_path):
    """An unusual path is found through /proc/<pid>/cgroup without a walk."""
    root = make_v2_root(tmp_path)
    rel = f"custom/runtime/ctr-{CID3}"
    write_tree(root / rel, V2_FILES)
    proc = tmp_path / "proc"
    write_tree(proc / "4242", {"cgroup": f"0::/{rel}\n"})
    reader = CgroupMetricsReader(root, proc=proc)
    assert reader.locate(CID3, pid=4242).procs_dir == str(root / rel)
    assert reader.read(CID3, pid=4242).pids == 7


def test_v2_pid_in_root_cgroup_is_not_a_container(tmp_path):
    root = make_v2_root(tmp_path)
    proc = tmp_path / "proc"
    write_tree(proc / "1", {"cgroup": "0::/\n"})
    assert CgroupMetricsReader(root, proc=proc).locate(CID, pid=1) is None


def test_v2_walk_skips_conmon_and_caches_misses(tmp_path):
    root = make_v2_root(tmp_path)
    pod = root / "kubepods.slice" / "kubepods-pod1.slice"
    write_tree(pod / f"crio-conmon-{CID}.scope", {"cpu.stat": "usage_usec 99\n"})
    reader = CgroupMetricsReader(root, rescan_interval=3600)
    assert reader.read(CID) is None  # only the monitor exists so far
    write_tree(pod / f"crio-{CID}.scope", V2_FILES)
    assert reader.read(CID) is None  # the miss is remembered...
    reader.forget(CID)
    assert reader.read(CID).cpu_usage_ns == 2503781000  # ...until forgotten


def test_detect_layout_v2_under_unified(tmp_path):
    write_tree(tmp_path / "unified", {"cgroup.controllers": "cpu memory\n"})
    version, unified, mounts = detect_layout(str(tmp_path))
    assert (version, unified, mounts) == (2, str(tmp_path / "unified"), {})


# ------------------------------------------------------------ v1 file trees


@pytest.mark.parametrize("symlinks", [True, False])
@pytest.mark.parametrize(
    "rel",
    [
        f"docker/{CID}",
        f"system.slice/docker-{CID}.scope",
        f"kubepods/burstable/pod1/{CID}",
    ],
)
def test_v1_tree_reads_every_metric(tmp_path, rel, symlinks):
    root = make_v1_root(tmp_path, rel, symlinks)
    reader = CgroupMetricsReader(root)
    assert reader.version == 1
    m = reader.read(CID)
    assert m is not None
    assert m.cgroup_version == 1
    assert m.cpu_usage_ns == 17963197
    assert m.cpu_limit_cores == 0.5
    assert (m.cpu_periods, m.cpu_throttled_periods, m.cpu_throttled_ns) == (
        3,
        1,
        123456789,
    )
    assert m.memory_usage_bytes == 3000000
    assert m.memory_working_set_bytes == 1000000  # usage - total_inactive_file
    assert m.memory_limit_bytes == 67108864
    assert m.memory_oom_kills == 1
    assert (m.io_read_bytes, m.io_write_bytes) == (8292, 4096)
    assert (m.io_read_ops, m.io_write_ops) == (2, 1)
    assert m.pids == 1 and m.pids_limit is None


def test_v1_unlimited_and_vanished(tmp_path):
    rel = f"docker/{CID}"
    root = make_v1_root(tmp_path, rel)
    unlimited = {"memory.limit_in_bytes": "9223372036854771712\n"}
    write_tree(root / "memory" / rel, unlimited)
    write_tree(root / "cpu,cpuacct" / rel, {"cpu.cfs_quota_us": "-1\n"})
    reader = CgroupMetricsReader(root)
    m = reader.read(CID)
    assert m.memory_limit_bytes is None and m.cpu_limit_cores is None
    for hierarchy in V1_FILES:
        shutil.rmtree(root / hierarchy / rel)
    assert reader.read(CID) is None


def test_v1_locate_through_init_pid(tmp_path):
    rel = f"odd/place/{CID4}"
    root = make_v1_root(tmp_path, rel)
    proc = tmp_path / "proc"
    text = "".join(
        f"{n}:{c}:/{rel}\n"
        for n, c in enumerate(["cpu,cpuacct", "memory", "blkio", "pids"], 1)
    )
    write_tree(proc / "77", {"cgroup": text + f"0::/{rel}\n"})
    reader = CgroupMetricsReader(root, proc=proc)
    paths = reader.locate(CID4, pid=77)
    assert paths.memory == str(root / "memory" / rel)
    assert reader.read(CID4, pid=77).memory_oom_kills == 1


def test_v1_pid_in_root_cgroup_is_not_a_container(tmp_path):
    """A stale or reused pid in the root cgroup must not give a container the
    whole host's CPU and memory."""
    root = make_v1_root(tmp_path, f"docker/{CID}")
    proc = tmp_path / "proc"
    text = "".join(f"{n}:{c}:/\n" for n, c in
                   enumerate(["cpu,cpuacct", "memory", "blkio", "pids"], 1))
    write_tree(proc / "1", {"cgroup": text + "0::/\n"})
    assert CgroupMetricsReader(root, proc=proc).locate(CID4, pid=1) is None


# ------------------------------------------------------------ net dev


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
  eth0: 5577311    4011    1    2    0     0          0         0   337885    3210    3    4    0     0       0          0
"""  # noqa: E501 - recorded verbatim


def test_parse_net_dev():
    stats = parse_net_dev(NET_DEV)
    assert set(stats) == {"lo", "eth0"}
    assert stats["eth0"] == InterfaceStats(
        "eth0", 5577311, 4011, 1, 2, 337885, 3210, 3, 4
    )
    assert total(stats).rx_packets == 4023
    assert parse_net_dev("garbage\n  x: 1 2 3\n") == {}


def test_read_net_dev_from_recorded_proc(tmp_path):
    write_tree(tmp_path / "9" / "net", {"dev": NET_DEV})
    assert set(read_net_dev(9, proc=tmp_path)) == {"eth0"}
    assert set(read_net_dev(9, proc=tmp_path, include_loopback=True)) == {"lo", "eth0"}
    assert read_net_dev(10, proc=tmp_path) is None


# ------------------------------------------------------------ services

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0
"""  # noqa: E501
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0
"""  # noqa: E501
UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2001 2 0 0
  11: 0200000A:A000 0100000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 2002 2 0 0
"""  # noqa: E501


def test_listening_sockets():
    found = listening_sockets({"tcp": TCP, "tcp6": TCP6, "udp": UDP})
    assert found == {
        1001: ("0.0.0.0", 8080, "tcp"),
        1003: ("::", 8080, "tcp"),
        2001: ("0.0.0.0", 53, "udp"),
    }


def test_read_listeners_stops_at_the_first_connection(tmp_path):
    header, listen, established = TCP.splitlines()
    # Listeners first, then a long established/TIME_WAIT table, as the kernel
    # prints it; more than one read chunk of each.
    text = "\n".join([header] + [listen] * 500 + [established] * 5000) + "\n"
    path = tmp_path / "tcp"
    path.write_text(text)
    head = _read_listeners(str(path), chunk=4096)
    assert head.splitlines() == [header] + [listen] * 500
    only_listeners = tmp_path / "tcp-listen"
    only_listeners.write_text("\n".join([header, listen]) + "\n")
    assert _read_listeners(str(only_listeners)).splitlines() == [header, listen]
    assert _read_listeners(str(tmp_path / "missing")) is None


def test_listening_cache_rereads_on_new_processes_or_age():
    now = [100.0]
    cache = ListeningCache(ttl=30, clock=lambda: now[0])
    reads = []

    def read(value):
        def reader():
            reads.append(value)
            return {value: ("0.0.0.0", 80, "tcp")}
        return reader

    assert cache.get(1, (10,), read(1)) == {1: ("0.0.0.0", 80, "tcp")}
    now[0] += 5
    assert cache.get(1, (10,), read(2)) == {1: ("0.0.0.0", 80, "tcp")}  # cached
    assert cache.get(1, (10, 11), read(3))[3]  # a new process: read again
    now[0] += 31
    assert cache.get(1, (10, 11), read(4))[4]  # too old: read again
    assert reads == [1, 3, 4]
    cache.get(2, (20,), read(5))
    now[0] += 61
    cache.get(2, (20,), read(6))
    assert set(cache._entries) == {2}  # namespace 1 was not asked for: forgotten


def _fake_process(proc: Path, pid: int, comm: str, inodes: list[int],
                  netns: Path, tcp: Path) -> None:
    """A /proc/<pid> with what services_for_pids reads; namespace files are
    hard links, so processes of one namespace share inodes as in /proc."""
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "ns").mkdir()
    (d / "net").mkdir()
    (d / "root" / "etc").mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t0\t0\t0\t0\n")
    (d / "cmdline").write_text(comm + "\0")
    (d / "root" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    for i, inode in enumerate(inodes):
        os.symlink(f"socket:[{inode}]", d / "fd" / str(i))
    os.link(netns, d / "ns" / "net")
    os.link(tcp, d / "net" / "tcp")


def test_services_rescan_at_once_when_a_process_joins(tmp_path):
    """A new process in a namespace is the usual reason for a new listener:
    the cache keyed by the process set must read the table again at once."""
    header, listen_8080 = TCP.splitlines()[:2]
    listen_9090 = listen_8080.replace(":1F90", ":2382").replace(" 1001 ", " 1004 ")
    proc = tmp_path / "proc"
    netns, tcp = tmp_path / "netns", tmp_path / "tcp"
    netns.write_text("")
    tcp.write_text("\n".join([header, listen_8080]) + "\n")
    _fake_process(proc, 10, "web", [1001], netns, tcp)
    cache = ListeningCache(ttl=30, clock=lambda: 100.0)

    first = services_for_pids([10], proc, cache)
    assert [(s.command, s.port) for s in first if s.port] == [("web", 8080)]

    tcp.write_text("\n".join([header, listen_8080, listen_9090]) + "\n")
    _fake_process(proc, 11, "admin", [1004], netns, tcp)
    second = services_for_pids([10, 11], proc, cache)
    assert sorted((s.command, s.port) for s in second if s.port) == [
        ("admin", 9090), ("web", 8080)]


def test_sampler_reads_services_every_call_when_told_to(tmp_path):
    header, listen_8080 = TCP.splitlines()[:2]
    listen_9090 = listen_8080.replace(":1F90", ":2382").replace(" 1001 ", " 1004 ")
    root = make_v2_root(tmp_path)
    container = root / "docker" / CID
    write_tree(container, {**V2_FILES, "cgroup.procs": "10\n"})
    proc = tmp_path / "proc"
    netns, tcp = tmp_path / "netns", tmp_path / "tcp"
    netns.write_text("")
    tcp.write_text("\n".join([header, listen_8080]) + "\n")
    _fake_process(proc, 10, "web", [1001], netns, tcp)
    sampler = MetricsSampler(str(root), str(proc), services_every=1)
    running = {CID: {"state": "running"}}

    sampler.sample(running)
    assert [s["port"] for s in sampler.services(CID) if s["port"]] == [8080]
    tcp.write_text("\n".join([header, listen_8080, listen_9090]) + "\n")
    _fake_process(proc, 11, "admin", [1004], netns, tcp)
    write_tree(container, {"cgroup.procs": "10\n11\n"})
    sampler.sample(running)
    assert sorted(s["port"] for s in sampler.services(CID) if s["port"]) == [8080, 9090]


def test_sampler_passes_on_dockers_oom_killed(tmp_path):
    sampler = MetricsSampler(str(make_v2_root(tmp_path)), str(tmp_path / "proc"))
    out = sampler.sample({CID: {"state": "exited", "oom_killed": True},
                          CID2: {"state": "exited"}})
    assert out[CID]["oom_killed"] is True and out[CID]["memory_oom_kills"] == 1
    assert out[CID2]["oom_killed"] is False


def test_kernel_prints_listeners_before_connections():
    """The early stop above relies on this order in the real /proc/net/tcp."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        table = Path("/proc/self/net/tcp").read_text().splitlines()[1:]
        states = [ln.split()[3] for ln in table]
        first_other = next(i for i, st in enumerate(states) if st != "0A")
        assert all(st != "0A" for st in states[first_other:])
        port = f"{listener.getsockname()[1]:04X}"
        head = _read_listeners("/proc/self/net/tcp")
        assert any(f":{port} " in ln.split(" 0A ")[0] for ln in head.splitlines()[1:])
    finally:
        for s in (client, accepted, listener):
            s.close()


def test_process_services_credits_each_port_once():
    listening = listening_sockets({"tcp": TCP, "tcp6": TCP6, "udp": UDP})
    processes = [
        (10, "nginx", "root", "nginx: master"),
        (11, "nginx", "www-data", "nginx: worker"),
        (12, "dnsd", "root", "dnsd"),
        (13, "sh", "root", "sh"),
    ]
    sockets_of = {10: {1001, 1003}, 11: {1001, 1003, 1002}, 12: {2001}, 13: set()}
    records = process_services(processes, sockets_of, listening)
    assert [r.label for r in records] == ["nginx :8080", "nginx", "dnsd :53/udp", "sh"]
    assert records[0] == ServiceRecord(
        10, "nginx", "root", 8080, "tcp", records[0].ip, "nginx: master"
    )
    assert records[0].ip in ("0.0.0.0", "::")
    assert records[1].port is None and records[1].user == "www-data"


def test_status_and_passwd_parsers():
    assert parse_status_uid("Name:\tx\nUid:\t33\t33\t33\t33\n") == 33
    assert parse_status_uid("Name:\tx\n") is None
    assert parse_passwd("root:x:0:0::/:/bin/sh\nwww-data:x:33:33::/:/bin/false\n") == {
        0: "root",
        33: "www-data",
    }
