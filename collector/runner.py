"""Wires a Collector from settings and runs it: the one place that opens its sources.

``python -m collector`` (:func:`main`) and its alias ``manage.py collect`` share
:func:`add_arguments` and :func:`run`, so the two accept the same options and
behave the same; only ``main`` configures logging, which Django does for its alias.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TextIO

from collector.agent import Collector, open_tracer
from collector.cgroups import CgroupResolver
from collector.container_metrics import MetricsSampler
from collector.docker_events import DockerWatcher
from collector.reporter import HistoryPolicy, RedisReporter, redis_client
from collector.schema import Keys, validate_host_id
from collector.settings import CollectorSettings, SettingsError, settings_from_env

__all__ = ["add_arguments", "build_collector", "dump_ebpf_program", "main", "run",
           "stop_on_signals"]

DESCRIPTION = ("Trace this host's connections and containers and report them to "
               "Redis.")


def build_collector(*, redis_url: str, prefix: str, host_id: str,
                    node_ttl: float, flow_ttl: float,
                    history: HistoryPolicy | None = None,
                    force_fallback: bool = False,
                    trace_udp: bool = True,
                    ebpf_program: str = "auto") -> Collector:
    validate_host_id(host_id)
    keys = Keys(prefix)
    tracer, reason = open_tracer(force_fallback, trace_udp=trace_udp,
                                 program=ebpf_program)
    reporter = RedisReporter(redis_client(redis_url), keys, node_ttl=node_ttl,
                             flow_ttl=flow_ttl, history=history)
    watcher = DockerWatcher().start()
    watcher.wait_synced(timeout=5)
    return Collector(host_id, tracer, watcher, CgroupResolver(), reporter,
                     sampler=MetricsSampler(), mode_reason=reason)


def dump_ebpf_program(trace_udp: bool = True, program: str = "auto") -> str:
    from collector.ebpf.tracer import ConnectionTracer

    return ConnectionTracer.render_program(trace_udp=trace_udp, program=program)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The collector's command-line options, on either entry point's parser."""
    parser.add_argument("--duration", type=float, default=None,
                        help="run for this many seconds, then exit")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between reports (default: PORTOLAN_INTERVAL, "
                             "else 1.0)")
    parser.add_argument("--fallback", action="store_true",
                        help="use the /proc poller even where eBPF loads")
    parser.add_argument("--ebpf-dump", action="store_true",
                        help="print the final BPF C program and exit")


def run(settings: CollectorSettings, *, duration: float | None = None,
        interval: float | None = None, fallback: bool = False,
        ebpf_dump: bool = False, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> None:
    """Run this host's collector until ``duration`` passes or Ctrl-C.

    Raises SettingsError (its message names the option) for bad input.
    """
    if ebpf_dump:
        out.write(dump_ebpf_program(trace_udp=settings.trace_udp,
                                    program=settings.ebpf_program))
        return
    interval = settings.interval if interval is None else interval
    if not interval > 0:
        raise SettingsError("--interval must be positive")
    collector = build_collector(
        redis_url=settings.redis_url,
        prefix=settings.key_prefix,
        host_id=settings.host_id,
        node_ttl=settings.node_ttl,
        flow_ttl=settings.flow_ttl,
        history=HistoryPolicy(
            step=settings.history_step,
            fine=settings.history_fine,
            coarse_step=settings.history_coarse_step,
            window=settings.history_window,
        ),
        force_fallback=fallback,
        trace_udp=settings.trace_udp,
        ebpf_program=settings.ebpf_program,
    )
    host = collector.host
    err.write(f"collector {host.id}: {host.mode} mode"
              + (f" ({host.mode_reason})" if host.mode_reason else "") + "\n")
    err.flush()
    try:
        collector.run(interval=interval, duration=duration, stop=stop_on_signals())
    except KeyboardInterrupt:
        pass


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so the collector ends between steps and
    its last step still reports.

    Docker and Kubernetes stop a container with SIGTERM, whose default kills
    Python at once: the counts since the last step (up to an interval's) would be
    lost at every rolling update. SIGKILL after the grace period still ends it.
    SIGINT (Ctrl-C) gets its handler set even where it came in ignored: a shell
    starts background jobs with SIGINT ignored, and Python then leaves it so,
    which made ``kill -INT`` do nothing at all.
    """
    stop = threading.Event()

    def on_stop_signal(signum, frame) -> None:
        # Set from another thread: the handler runs in the main thread, which
        # may hold the event's own lock at that moment (inside stop.wait).
        threading.Thread(target=stop.set, name="sigterm", daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        # Handlers can only be set from the main thread.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_stop_signal)
    return stop


def main(argv: Sequence[str] | None = None,
         env: Mapping[str, str] | None = None) -> int:
    """``python -m collector``: settings from the environment, logging to stderr."""
    parser = argparse.ArgumentParser(prog="python -m collector",
                                     description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_env(os.environ if env is None else env)
    except SettingsError as exc:
        parser.exit(2, f"collector: {exc}\n")
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(settings, **vars(args))
    except SettingsError as exc:
        parser.exit(2, f"collector: {exc}\n")
    return 0
