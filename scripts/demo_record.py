"""Records demo/demo.capture: a small microservice system on real containers,
seen by the real collector. Run it again to re-record (root, Docker, eBPF):

    sudo .venv/bin/python scripts/demo_record.py [--duration 150] [-w demo/demo.capture]

Three hosts' worth: one collector per host id on this machine, each captured
with only its own containers (``capture --container portolan.demo.host=H``),
the three files merged into one. About 30 busybox containers (the image is
imported from Debian's busybox-static, as the tests do; nothing is pulled) on
a network of their own, talking only to each other by address: a front end,
APIs, a database, a cache, a queue, DNS. Halfway through, ``payments`` stops
listening while it keeps running (its callers are refused); ``report-job``
crash-loops from the start.
"""

from __future__ import annotations

import argparse
import heapq
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.capture.format import (  # noqa: E402
    CaptureReader,
    CaptureWriter,
    Header,
    Report,
)

IMAGE = "portolan-demo:busybox-2"
NETWORK = "portolan-demo"
SUBNET = "172.30.213.0/24"
LABEL = "portolan.demo"
APPLETS = ("sh", "nc", "httpd", "wget", "sleep", "echo", "kill", "true", "seq",
           "nslookup")
HOSTS = ("demo-edge", "demo-app", "demo-data")
# busybox has no UDP server: the DNS is the host's python3 (its /usr, /lib
# mounted read-only, as the tests run host programs), answering NXDOMAIN.
DNS_SERVER = """import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) >= 12:
        s.sendto(q[:2] + b"\\x81\\x83" + q[4:6] + bytes(6) + q[12:], peer)
"""
HOST_PROGRAMS = [arg for d in ("/usr", "/lib", "/lib64") for arg in
                 ("-v", f"{d}:{d}:ro")]


def ip(n: int) -> str:
    return f"172.30.213.{n}"


def serve(port: int) -> str:
    return f"httpd -f -p {port} -h /var/www"


def call_loop(targets: list[tuple[int, int]], period: float = 1.0,
              dns: bool = False) -> str:
    """A shell loop calling each (address number, port) once per period."""
    # (busybox-static's wget -T crashes: no timeout option; refused is fast)
    calls = " ; ".join(f"wget -q -O /dev/null http://{ip(n)}:{p}/"
                       for n, p in targets)
    if dns:
        calls += f" ; nslookup api.demo.internal {ip(53)} >/dev/null 2>&1"
    return f"while true; do {calls} ; sleep {period}; done"


def both(server: str, client: str) -> str:
    return f"{server} & {client}"


# name, host, address number, command, restart policy
def services() -> list[tuple[str, str, int, str, str | None]]:
    api = [(21, 8080), (22, 8080), (23, 8080)]
    s = [
        ("dns", "demo-edge", 53, None, None),  # DNS_SERVER, on the host's python3
        ("lb", "demo-edge", 10, both(serve(80), call_loop([(11, 80), (12, 80)],
                                                            0.5)), None),
        ("frontend-1", "demo-edge", 11,
         both(serve(80), call_loop(api[:2], 1, dns=True)), None),
        ("frontend-2", "demo-edge", 12,
         both(serve(80), call_loop(api[1:], 1, dns=True)), None),
        ("loadgen-1", "demo-edge", 13, call_loop([(10, 80)], 0.5), None),
        ("loadgen-2", "demo-edge", 14, call_loop([(10, 80)], 0.7), None),
        ("static", "demo-edge", 15, serve(80), None),
        ("cdn-sync", "demo-edge", 16, call_loop([(15, 80)], 3), None),
        ("admin", "demo-edge", 17, both(serve(80), call_loop([(31, 9000)], 4)),
         None),
        ("status-page", "demo-edge", 18, call_loop([(11, 80), (21, 8080)], 5),
         None),
    ]
    for i, (n, _) in enumerate(api):
        s.append((f"api-{i + 1}", "demo-app", n, both(serve(8080), call_loop(
            [(31, 9000), (41, 5432), (45, 6379), (35, 7000)], 1, dns=True)), None))
    s += [
        ("auth-1", "demo-app", 31, both(serve(9000), call_loop([(45, 6379)], 2)),
         None),
        ("auth-2", "demo-app", 32, both(serve(9000), call_loop([(46, 6379)], 2)),
         None),
        ("cart", "demo-app", 33, both(serve(8081), call_loop([(41, 5432)], 2)),
         None),
        ("search", "demo-app", 34, both(serve(9200), call_loop([(42, 5432)], 3)),
         None),
        # The dependency that starts failing: it keeps running, stops serving.
        ("payments", "demo-app", 35, None, None),
        ("notifier", "demo-app", 36, call_loop([(37, 2525), (47, 5672)], 2), None),
        ("mail", "demo-app", 37, serve(2525), None),
        ("report-job", "demo-app", 38,
         f"wget -q -O /dev/null http://{ip(41)}:5432/ ; sleep 2; exit 3",
         "always"),
        ("db-primary", "demo-data", 41, serve(5432), None),
        ("db-replica", "demo-data", 42, both(serve(5432), call_loop([(41, 5432)],
                                                                    2)), None),
        ("db-backup", "demo-data", 43, call_loop([(41, 5432)], 5), None),
        ("cache-1", "demo-data", 45, serve(6379), None),
        ("cache-2", "demo-data", 46, serve(6379), None),
        ("queue", "demo-data", 47, serve(5672), None),
        ("worker-1", "demo-data", 48, call_loop([(47, 5672), (41, 5432)], 1),
         None),
        ("worker-2", "demo-data", 49, call_loop([(47, 5672), (45, 6379)], 1),
         None),
        ("metrics", "demo-data", 50, both(serve(9090), call_loop(
            [(21, 8080), (41, 5432), (45, 6379)], 5)), None),
    ]
    return s


def build_image() -> None:
    """busybox-static as a one-file userland (no registry), as tests/conftest.py."""
    if subprocess.run(["docker", "image", "inspect", IMAGE],
                      capture_output=True).returncode == 0:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "var/www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"),
                           ("var/www/index.html", "portolan demo\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    subprocess.run(["docker", "import", "-", IMAGE], input=buf.getvalue(),
                   check=True, capture_output=True)


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], check=check, capture_output=True,
                          text=True).stdout.strip()


def cleanup() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    docker("network", "rm", NETWORK, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in argv], env=env, cwd=ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def merge(parts: list[Path], out: Path) -> int:
    """One file from the hosts' files, in time order."""
    readers = [CaptureReader(p) for p in parts]
    hosts = sorted({h for r in readers for h in r.header.hosts})
    with CaptureWriter(out, Header(hosts=hosts, created=time.time(), source="live",
                                   notes={"recorded_by": "scripts/demo_record.py"}
                                   ), level=19) as writer:
        for record in heapq.merge(*(r.records() for r in readers),
                                  key=lambda r: r.ts):
            # One machine played three hosts: name each by its host id.
            if isinstance(record, Report):
                record.host.hostname = record.host.id
            writer.write(record)
    return writer.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("-w", "--write", type=Path,
                        default=ROOT / "demo" / "demo.capture")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo_record: run as root (eBPF and Docker)")
    work = Path(tempfile.mkdtemp(prefix="portolan-demo-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    procs: list[subprocess.Popen] = []
    env = dict(os.environ, REDIS_URL=url, PORTOLAN_VAR_DIR=str(work),
               PORTOLAN_INTERVAL="1")
    try:
        cleanup()
        build_image()
        procs.append(start([shutil.which("redis-server"), "--port", port,
                            "--bind", "127.0.0.1", "--save", "", "--appendonly",
                            "no", "--dir", work], env, work / "redis.log"))
        docker("network", "create", "--subnet", SUBNET, "--label", LABEL, NETWORK)
        for host in HOSTS:
            procs.append(start([sys.executable, "-m", "collector"],
                               dict(env, PORTOLAN_HOST_ID=host),
                               work / f"collector-{host}.log"))
        time.sleep(20)  # the collectors compile and load their programs
        fail_after = args.duration / 2
        for name, host, n, command, restart in services():
            argv = ["sh", "-c", command]
            if name == "payments":  # serves, then stops listening
                argv[2] = (f"{serve(7000)} & pid=$! ; sleep {fail_after:.0f} ; "
                           "kill $pid ; while true; do sleep 60; done")
            extra = []
            if name == "dns":
                argv, extra = ["/usr/bin/python3", "-c", DNS_SERVER], HOST_PROGRAMS
            docker("run", "-d", "--name", f"demo-{name}", "--hostname", name,
                   "--network", NETWORK, "--ip", ip(n), "--label", LABEL,
                   "--label", f"{LABEL}.host={host}", "--label", f"app={name}",
                   *(["--restart", restart] if restart else []), *extra,
                   IMAGE, *argv)
        parts = [work / f"{host}.capture" for host in HOSTS]
        captures = [start([sys.executable, "manage.py", "capture", "-w", part,
                           "--hosts", host, "--container", f"{LABEL}.host={host}",
                           "--duration", args.duration], env,
                          work / f"capture-{host}.log")
                    for host, part in zip(HOSTS, parts, strict=True)]
        procs += captures
        for c in captures:
            c.wait(timeout=args.duration + 60)
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.unlink(missing_ok=True)
        n = merge(parts, args.write)
        print(f"{args.write}: {n} records, {args.write.stat().st_size} bytes "
              f"(logs in {work})")
    finally:
        cleanup()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
