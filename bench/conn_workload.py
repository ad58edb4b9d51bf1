"""Connection workload run inside the benchmark's containers (host python).

    conn_workload.py server PORT
    conn_workload.py client HOST PORT SECONDS [RATE] [CONCURRENCY] [TICK]

The server accepts, reads the request, answers 16 bytes and closes. The client
opens short connections for SECONDS (at RATE per second if given, else as fast
as it goes, with CONCURRENCY processes) and prints one JSON line with the
number of completed connections and bytes, and the whole machine's CPU time
(busy, idle, steal) over the run. With TICK (seconds), it also gives, per
process, its count of completed connections every TICK as [monotonic time,
count] pairs ("ticks"): the host's CLOCK_MONOTONIC, which a container shares.
"""

import json
import os
import socket
import sys
import time

REQUEST = b"GET / portolan-bench\n"  # 21 bytes
REPLY = b"HTTP/1.0 200 OK\n"  # 16 bytes


def serve(port: int) -> None:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    for _ in range(max(1, os.cpu_count() or 1) - 1):
        if os.fork() == 0:
            break
    while True:
        conn, _ = ls.accept()
        try:
            conn.recv(64)
            conn.sendall(REPLY)
        except OSError:
            pass
        finally:
            conn.close()


def run_client(host: str, port: int, seconds: float, rate: float,
               tick: float = 0.0) -> dict:
    done = failed = sent = received = 0
    start = time.monotonic()
    end = start + seconds
    interval = 1.0 / rate if rate else 0.0
    next_at = start
    ticks = [[start, 0]] if tick else []
    next_tick = start + tick if tick else end + 1
    while True:
        now = time.monotonic()
        if now >= next_tick:
            ticks.append([round(now, 4), done])
            next_tick += tick
        if now >= end:
            break
        if interval:
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
        s = socket.socket()
        try:
            s.connect((host, port))
            s.sendall(REQUEST)
            sent += len(REQUEST)
            # Read to EOF so the server closes first and holds the TIME_WAIT:
            # the client's ports are not used up at high rates.
            while data := s.recv(64):
                received += len(data)
            done += 1
        except OSError:
            failed += 1
        finally:
            s.close()
    result = {"connections": done, "failed": failed, "bytes_sent": sent,
              "bytes_received": received, "seconds": time.monotonic() - start}
    if tick:
        result["ticks"] = ticks
    return result


def machine_cpu_seconds() -> dict:
    """The whole machine's CPU time so far, from /proc/stat (not namespaced).

    busy: user, nice, system, irq and softirq of every process on every CPU,
    the tracer's included; idle and iowait; steal: time the hypervisor gave
    to someone else.
    """
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / hz,
            "idle": (idle + iowait) / hz, "steal": steal / hz}


def client(host: str, port: int, seconds: float, rate: float, concurrency: int,
           tick: float = 0.0):
    cpu_start = machine_cpu_seconds()
    readers = []
    for _ in range(concurrency):
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            result = run_client(host, port, seconds,
                                rate / concurrency if rate else 0, tick)
            os.write(w, json.dumps(result).encode())
            os._exit(0)
        os.close(w)
        readers.append(r)
    total = {"connections": 0, "failed": 0, "bytes_sent": 0, "bytes_received": 0,
             "seconds": 0.0}
    ticks = []
    for r in readers:
        chunks = b""
        while chunk := os.read(r, 65536):
            chunks += chunk
        part = json.loads(chunks)
        for k in total:
            total[k] = max(total[k], part[k]) if k == "seconds" else total[k] + part[k]
        if "ticks" in part:
            ticks.append(part["ticks"])
    for _ in readers:
        os.wait()
    cpu_end = machine_cpu_seconds()
    for k, v in cpu_end.items():
        total[f"cpu_{k}_s"] = round(v - cpu_start[k], 2)
    if ticks:
        total["ticks"] = ticks
    print(json.dumps(total), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
               float(sys.argv[5]) if len(sys.argv) > 5 else 0.0,
               int(sys.argv[6]) if len(sys.argv) > 6 else 1,
               float(sys.argv[7]) if len(sys.argv) > 7 else 0.0)
