"""Host identity, load and labels: parsers on recorded text, reader on a fake /proc."""

from __future__ import annotations

import os

import pytest

from collector.host_info import (
    HOST_LABELS_ENV,
    HostInfo,
    HostLoad,
    HostProcess,
    host_processes,
    labels_from_env,
    parse_host_labels,
    parse_loadavg,
    parse_meminfo,
    parse_uptime,
    read_host_info,
    read_host_load,
)

CID = "4f1c2b3a" * 8

MEMINFO = """MemTotal:       24683520 kB
MemFree:        23652352 kB
MemAvailable:   24171520 kB
Buffers:           45056 kB
Cached:           765952 kB
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region=eu,zone=a,role=db", {"region": "eu", "zone": "a", "role": "db"}),
        (" region = eu , zone=a ,", {"region": "eu", "zone": "a"}),
        ("team=", {"team": ""}),
        ("topology.kubernetes.io/zone=a", {"topology.kubernetes.io/zone": "a"}),
        ("", {}),
        ("   ", {}),
        (None, {}),
    ],
)
def test_parse_host_labels(text, expected):
    assert parse_host_labels(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("region", "not key=value"),
        ("region=eu,zone", "not key=value"),
        ("=eu", "invalid label key"),
        ("re gion=eu", "invalid label key"),
        ("region=eu=west", "more than one '='"),
        ("region=eu,region=us", "given twice"),
    ],
)
def test_malformed_labels_name_the_variable(text, fragment):
    with pytest.raises(ValueError, match=HOST_LABELS_ENV) as excinfo:
        parse_host_labels(text)
    assert fragment in str(excinfo.value)


def test_labels_from_env():
    assert labels_from_env({HOST_LABELS_ENV: "role=db"}) == {"role": "db"}
    assert labels_from_env({}) == {}
    with pytest.raises(ValueError, match=HOST_LABELS_ENV):
        labels_from_env({HOST_LABELS_ENV: "oops"})


def test_labels_from_process_environment(monkeypatch):
    monkeypatch.setenv(HOST_LABELS_ENV, "region=eu,zone=b")
    assert labels_from_env() == {"region": "eu", "zone": "b"}


def test_parse_meminfo():
    assert parse_meminfo(MEMINFO) == (24683520 * 1024, 24171520 * 1024)
    # Old kernels: no MemAvailable, so MemFree stands in.
    assert parse_meminfo("MemTotal: 10 kB\nMemFree: 4 kB\n") == (10240, 4096)
    assert parse_meminfo("") == (0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.52 0.58 0.59 1/312 12345\n", (0.52, 0.58, 0.59)),
        ("", (0.0, 0.0, 0.0)),
        ("x y z", (0.0, 0.0, 0.0)),
    ],
)
def test_parse_loadavg(text, expected):
    assert parse_loadavg(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("350735.47 234388.90\n", 350735.47), ("", 0.0)]
)
def test_parse_uptime(text, expected):
    assert parse_uptime(text) == expected


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def fake_proc(tmp_path):
    proc = tmp_path / "proc"
    write(proc / "meminfo", MEMINFO)
    write(proc / "loadavg", "1.50 1.00 0.50 2/300 999\n")
    write(proc / "uptime", "3600.25 7000.00\n")
    write(proc / "sys/kernel/hostname", "db-01\n")
    write(proc / "sys/kernel/osrelease", "6.1.0-test\n")
    # pid 1: a host daemon; 2: a kernel thread; 300: in a container; 400: host.
    write(proc / "1/cgroup", "0::/init.scope\n")
    write(proc / "1/comm", "systemd\n")
    write(proc / "1/cmdline", "/sbin/init\0")
    write(proc / "2/cgroup", "0::/\n")
    write(proc / "2/comm", "kthreadd\n")
    write(proc / "2/cmdline", "")
    write(proc / "300/cgroup", f"4:memory:/docker/{CID}\n0::/docker/{CID}\n")
    write(proc / "300/comm", "nginx\n")
    write(proc / "300/cmdline", "nginx\0")
    write(proc / "400/cgroup", "0::/system.slice/dockerd.service\n")
    write(proc / "400/comm", "dockerd\n")
    write(proc / "400/cmdline", "dockerd\0")
    write(proc / "self/cgroup", "0::/\n")  # not a pid: ignored
    return proc


def test_read_host_load_is_the_changing_part(fake_proc):
    assert read_host_load(fake_proc) == HostLoad(
        cpus=os.cpu_count(),
        memory_total_bytes=24683520 * 1024,
        memory_available_bytes=24171520 * 1024,
        load1=1.5,
        load5=1.0,
        load15=0.5,
        uptime_seconds=3600.25,
    )


def test_read_host_info(fake_proc):
    info = read_host_info(fake_proc, environ={HOST_LABELS_ENV: "region=eu,role=db"})
    assert info == HostInfo(
        hostname="db-01",
        kernel="6.1.0-test",
        load=read_host_load(fake_proc),
        labels={"region": "eu", "role": "db"},
    )
    assert info.to_dict()["labels"] == {"region": "eu", "role": "db"}
    assert info.to_dict()["load"]["uptime_seconds"] == 3600.25


def test_read_host_info_fails_fast_on_bad_labels(fake_proc):
    with pytest.raises(ValueError, match=HOST_LABELS_ENV):
        read_host_info(fake_proc, environ={HOST_LABELS_ENV: "region"})


def test_read_host_info_on_this_host():
    info = read_host_info(environ={})
    assert info.hostname and info.kernel == os.uname().release
    load = info.load
    assert load.cpus >= 1 and load.memory_total_bytes >= load.memory_available_bytes > 0
    assert load.uptime_seconds > 0


def test_host_processes_leave_out_containers_and_kernel_threads(fake_proc):
    assert host_processes(fake_proc) == [
        HostProcess(1, "systemd"),
        HostProcess(400, "dockerd"),
    ]
    with_kernel = host_processes(fake_proc, include_kernel_threads=True)
    assert HostProcess(2, "kthreadd") in with_kernel


def test_host_processes_on_this_host():
    pids = {p.pid for p in host_processes()}
    assert os.getpid() in pids
