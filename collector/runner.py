"""Wires a Collector from settings: the one place that opens its sources."""

from __future__ import annotations

from collector.agent import Collector, open_tracer
from collector.cgroups import CgroupResolver
from collector.container_metrics import MetricsSampler
from collector.docker_events import DockerWatcher
from collector.reporter import HistoryPolicy, RedisReporter, redis_client
from collector.schema import Keys, validate_host_id


def build_collector(*, redis_url: str, prefix: str, host_id: str,
                    node_ttl: float, flow_ttl: float,
                    history: HistoryPolicy | None = None,
                    force_fallback: bool = False,
                    trace_udp: bool = True) -> Collector:
    validate_host_id(host_id)
    keys = Keys(prefix)
    tracer, reason = open_tracer(force_fallback, trace_udp=trace_udp)
    reporter = RedisReporter(redis_client(redis_url), keys, node_ttl=node_ttl,
                             flow_ttl=flow_ttl, history=history)
    watcher = DockerWatcher().start()
    watcher.wait_synced(timeout=5)
    return Collector(host_id, tracer, watcher, CgroupResolver(), reporter,
                     sampler=MetricsSampler(), mode_reason=reason)


def dump_ebpf_program(trace_udp: bool = True) -> str:
    from collector.ebpf.tracer import ConnectionTracer

    return ConnectionTracer.render_program(trace_udp=trace_udp)
