"""The rules: pure checks from the container graph and what the analysis
remembers of earlier steps to findings, each with a plain-language reason.

A *rule* is a named kind of finding (``Finding.rule``: ``oom``,
``connect_failed``); a *check* is the function that finds it,
``check(G, ctx) -> list[Finding]``, which never changes ``ctx``. Each check is
registered once per rule it raises, with ``@rule``, which also says what the
rest of the analysis needs to know of that rule: whether it is the node's own
trouble (``intrinsic``, for the likely cause) and which baseline it judges by
(silent until that baseline is warm). After all checks ran,
``webapp.anomalies.memory.remember`` folds the step into the memory.

Hard findings (an OOM kill, a non-zero exit, a restart loop, a failing health
check) are facts and raise their anomaly at once; soft ones are raised only
when they persist (see ``webapp.anomalies.status``).

A check that raises is skipped for that step, so one broken check does not
blind the others; it is logged with its name and listed in
``RuleResults.failures`` (the analyzer counts them where users see them:
``webapp.anomalies.failures``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import networkx as nx

from webapp.anomalies import AnomalyError
from webapp.anomalies.attributes import (
    NOT_RUNNING,
    cannot_be_sending,
    carries_traffic,
    edge_rate,
    edges_with_targets,
    metrics_of,
    node_name,
    nodes_of_type,
    number,
)
from webapp.anomalies.baseline import is_spike
from webapp.anomalies.blame import STOPPED, UNSERVED, port_state
from webapp.anomalies.config import Config
from webapp.anomalies.failures import CheckFailure
from webapp.anomalies.keys import edge_target, parse_target
from webapp.anomalies.memory import Memory

__all__ = [
    "CHECKS",
    "RULES",
    "PortFailure",
    "Check",
    "Context",
    "Finding",
    "Rule",
    "RuleError",
    "RuleResults",
    "baseline_warming",
    "evaluate_rules",
    "port_failures",
    "rule",
]

log = logging.getLogger("portolan.anomalies.rules")

# A "note" is shown beside a target but leaves its status ok.
SEVERITIES = ("note", "warning", "critical")
FAILURE_KINDS = (
    ("failed_refused", "connection refused"),
    ("failed_timeout", "connection timed out"),
    ("failed_unreachable", "host unreachable"),
    ("failed_other", "connect failed"),
)


class RuleError(AnomalyError):
    """A rule registered twice, or a check raising a rule it did not register."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one target (a node id or ``edge_target``)."""

    target: str
    rule: str
    severity: str  # "note", "warning" or "critical"
    reason: str
    hard: bool = False  # a fact: raise at once, without waiting for repeats


@dataclass(frozen=True, slots=True)
class Context:
    """The inputs of a check besides the graph."""

    config: Config
    memory: Memory
    now: float
    # The service-level graph of the same moment: which port each failing
    # connect was to (None: blame by port is skipped).
    services: nx.DiGraph | None = None
    # Derived once per step for the checks that share it (``port_failures``).
    cache: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """A named kind of finding and what the analysis must know of it."""

    name: str
    intrinsic: bool = False  # the node's own trouble rather than its clients'
    baseline: str | None = None  # the series it judges by; silent until warm
    # On an edge: the client's own fault, so the edge does not make its
    # server a likely cause.
    caller_at_fault: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """A function that looks for one or more rules' findings."""

    find: Callable[[nx.DiGraph, Context], list[Finding]]
    rules: frozenset[str]

    @property
    def name(self) -> str:
        return self.find.__name__


@dataclass(slots=True)
class RuleResults:
    """One step's findings, and the checks that raised instead of judging."""

    findings: list[Finding] = field(default_factory=list)
    failures: list[CheckFailure] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[str]:
        return [f.check for f in self.failures]


# Every rule by name, and the checks in the order they were registered: both
# filled by ``@rule`` only.
RULES: dict[str, Rule] = {}
CHECKS: list[Check] = []


def rule(name: str, *, intrinsic: bool = False, baseline: str | None = None,
         caller_at_fault: bool = False) -> Callable:
    """Register the decorated check as the one that raises rule ``name``.

    A check that raises several rules is decorated once for each.
    """
    def register(find: Callable) -> Callable:
        if name in RULES:
            raise RuleError(f"rule {name!r} is registered twice")
        RULES[name] = Rule(name, intrinsic, baseline, caller_at_fault)
        for i, check in enumerate(CHECKS):
            if check.find is find:
                CHECKS[i] = replace(check, rules=check.rules | {name})
                break
        else:
            CHECKS.append(Check(find, frozenset({name})))
        return find
    return register


# ---------------------------------------------------------------- helpers


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable


def _failure_horizon(ctx: Context) -> float:
    return ctx.now - ctx.config.failure_window


def window_sums(ctx: Context, target: str, data: dict) -> dict[str, float]:
    """An edge's counter changes over the failure window, this step included."""
    return ctx.memory.window_sums(target, data, _failure_horizon(ctx))


def failure_text(sums: dict) -> str:
    """``connection refused, connection timed out``: the kinds seen, commonest first.

    >>> failure_text({"failed": 3, "failed_refused": 1, "failed_timeout": 2})
    'connection timed out, connection refused'
    """
    kinds = sorted(((sums.get(k, 0), text) for k, text in FAILURE_KINDS
                    if sums.get(k, 0) > 0), key=lambda kt: -kt[0])
    return ", ".join(text for _, text in kinds) or "connect failed"


def edge_failure(ctx: Context, target: str, data: dict) -> tuple[str, str] | None:
    """``(severity, summary)`` of an edge's failed connects in the window.

    Critical when every attempt of the latest step that had any failed (so a
    server that just went away is red at once, even after a good minute, and a
    client that calls every few seconds stays red between its calls); warning
    when at least ``edge_failure_ratio`` of the window's attempts failed. Once
    connects succeed again after a total outage, the outage is over.
    """
    horizon = _failure_horizon(ctx)
    if ctx.memory.window_sum(target, data, horizon, "failed") <= 0:
        return None  # most edges: nothing to sum
    steps = ctx.memory.recent_edge_deltas(target, data, horizon)
    sums: dict[str, float] = {}
    for deltas in steps:
        for name, value in deltas.items():
            sums[name] = sums.get(name, 0) + value
    failed = sums.get("failed", 0)
    if failed <= 0:
        return None
    attempts = failed + sums.get("connections", 0)
    latest = next((d for d in steps
                   if d.get("failed", 0) + d.get("connections", 0) > 0), {})
    last_failure = next(d for d in steps if d.get("failed", 0) > 0)
    if latest.get("failed", 0) <= 0 and last_failure.get("connections", 0) <= 0:
        return None  # an outage that is over: connects succeed again
    if latest.get("failed", 0) > 0 and latest.get("connections", 0) <= 0:
        severity = "critical"
    elif failed / attempts >= ctx.config.edge_failure_ratio:
        severity = "warning"
    else:
        return None
    summary = (f"{failure_text(sums)}: {failed:.0f} of {attempts:.0f} connects "
               f"failed in the last {ctx.config.failure_window:.0f} s")
    return severity, summary


@dataclass(frozen=True, slots=True)
class PortFailure:
    """Failed connects from a client to one port of a server, and that port's
    state on the server (``webapp.anomalies.blame``)."""

    port: int
    severity: str
    summary: str
    refused: float  # refused connects in the window
    state: str
    served_until: float | None


def port_failures(G: nx.DiGraph, ctx: Context) -> dict[tuple[str, str], list]:
    """Container-level edge ``(client, server)`` -> its failing ports, judged
    on the service-level edges (computed once per step)."""
    if "port_failures" in ctx.cache:
        return ctx.cache["port_failures"]
    out: dict[tuple[str, str], list[PortFailure]] = {}
    S = ctx.services
    for u, s, data in S.edges(data=True) if S is not None else ():
        service = S.nodes[s]
        owner = service.get("parent")
        if service.get("type") != "service" or owner not in G or u not in G:
            continue
        target = edge_target(u, s)
        found = edge_failure(ctx, target, data)
        if found is None:
            continue
        port = int(service.get("port") or 0)
        state, until = port_state(G.nodes[owner], port,
                                  ctx.memory.served.get(owner))
        refused = window_sums(ctx, target, data).get("failed_refused", 0)
        out.setdefault((u, owner), []).append(
            PortFailure(port, found[0], found[1], refused, state, until))
    ctx.cache["port_failures"] = out
    return out


def clients_fault(G: nx.DiGraph, ctx: Context, u: str, v: str) -> bool:
    """Whether every failing port of edge u -> v is refused because nothing
    ever served it: the client's fault, not the server's."""
    fails = port_failures(G, ctx).get((u, v))
    return bool(fails) and all(f.state == UNSERVED and f.refused > 0 for f in fails)


def servers_own_fault(G: nx.DiGraph, ctx: Context, u: str, v: str) -> bool:
    """Whether every failing port of edge u -> v is the client's fault or a
    service the server stopped (reported by ``service_stopped``)."""
    fails = port_failures(G, ctx).get((u, v))
    return bool(fails) and all(f.state in (UNSERVED, STOPPED) and f.refused > 0
                               for f in fails)


def _worst(severities) -> str:
    return "critical" if "critical" in severities else "warning"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


# ---------------------------------------------------------------- containers


@rule("exited", intrinsic=True)
def exited_nonzero(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """A container that exited with a non-zero code."""
    out = []
    for n, data in nodes_of_type(G, "container"):
        code = data.get("exit_code") or 0
        if data.get("state") in ("exited", "dead") and code != 0:
            hint = {137: " (killed)", 143: " (terminated)", 139: " (segfault)"}
            out.append(Finding(n, "exited", "critical",
                               f"exited with code {code}{hint.get(code, '')}",
                               hard=True))
    return out


@rule("restart_loop", intrinsic=True)
def restart_loop(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Restart count grew by ``restart_count`` within ``restart_window``."""
    conf, out = ctx.config, []
    for n, data in nodes_of_type(G, "container"):
        count = number(metrics_of(data).get("restart_count"))
        if count is None:
            continue
        horizon = ctx.now - conf.restart_window
        past = [c for t, c in ctx.memory.restarts.get(n, ()) if t >= horizon]
        grown = count - min(past) if past else 0
        if grown < 0:  # a recreated container: counting starts again
            grown = 0
        restarting = data.get("state") == "restarting" and count >= conf.restart_count
        # Until the history covers the window its growth is not the whole
        # story: a loop already under way when it began is known by its state.
        history = ctx.memory.restarts.get(n)
        young = not history or ctx.now - history[0][0] < conf.restart_window
        if grown >= conf.restart_count:
            reason = (f"restart loop: restarted {grown:.0f} times in the last "
                      f"{conf.restart_window / 60:.0f} min")
        elif restarting and young:
            # Only the lifetime count is known for a loop seen mid-way.
            reason = f"restart loop: restarting, {count:.0f} restarts so far"
        else:
            continue
        out.append(Finding(n, "restart_loop", "critical", reason, hard=True))
    return out


@rule("oom", intrinsic=True)
def oom_killed(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """An OOM kill (the cgroup's oom_kill count grew) within ``oom_hold``."""
    out = []
    for n, data in nodes_of_type(G, "container"):
        m = metrics_of(data)
        kills = number(m.get("memory_oom_kills"))
        # The count is for the container's lifetime: at first sight it tells
        # of kills long ago, so only its growth is a kill (as for edges).
        grown = ctx.memory.growth(n, "memory_oom_kills", kills)
        last = ctx.memory.oom_at.get(n)
        recent = last is not None and ctx.now - last <= ctx.config.oom_hold
        flagged = bool(m.get("oom_killed")) and data.get("state") in NOT_RUNNING
        if grown > 0 or recent or flagged:
            limit = number(m.get("memory_limit_bytes"))
            tail = f" at its {_size(limit)} memory limit" if limit else ""
            total = f" ({kills:.0f} kills so far)" if kills and kills > 1 else ""
            out.append(Finding(n, "oom", "critical", f"OOM killed{tail}{total}",
                               hard=True))
    return out


@rule("health", intrinsic=True)
def health_failing(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Docker's health check reports unhealthy."""
    return [
        Finding(n, "health", "critical", "health check failing (unhealthy)",
                hard=True)
        for n, data in nodes_of_type(G, "container")
        if metrics_of(data).get("health") == "unhealthy"
        and data.get("state") not in NOT_RUNNING
    ]


@rule("memory", intrinsic=True)
def memory_near_limit(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Working set at or above ``memory_ratio`` of the memory limit."""
    out = []
    for n, data in nodes_of_type(G, "container"):
        m = metrics_of(data)
        used = number(m.get("memory_working_set_bytes"))
        limit = number(m.get("memory_limit_bytes"))
        if used is None or not limit or data.get("state") in NOT_RUNNING:
            continue
        if used >= ctx.config.memory_ratio * limit:
            out.append(Finding(
                n, "memory", "warning",
                f"memory near its limit: {used / limit:.0%} of {_size(limit)}"))
    return out


@rule("cpu_throttled", intrinsic=True)
def cpu_throttled(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """CPU throttled in at least ``cpu_throttled_ratio`` of the periods."""
    out = []
    for n, data in nodes_of_type(G, "container"):
        m = metrics_of(data)
        ratio = number(m.get("cpu_throttled_ratio"))
        if ratio is None or data.get("state") in NOT_RUNNING:
            continue
        if ratio >= ctx.config.cpu_throttled_ratio:
            limit = number(m.get("cpu_limit_cores"))
            tail = f" (limit {limit:g} cores)" if limit else ""
            out.append(Finding(
                n, "cpu_throttled", "warning",
                f"CPU throttled in {ratio:.0%} of periods{tail}"))
    return out


@rule("cpu_spike", intrinsic=True, baseline="cpu_cores")
def cpu_spike(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """CPU use jumped well above the container's baseline."""
    conf, out = ctx.config, []
    for n, data in nodes_of_type(G, "container"):
        cores = number(metrics_of(data).get("cpu_cores"))
        b = ctx.memory.baselines.warm(n, "cpu_cores", ctx.now)
        if cores is None or b is None:
            continue
        if is_spike(b, cores, conf.spike_factor, conf.spike_zscore,
                    conf.spike_min_cpu_cores):
            out.append(Finding(
                n, "cpu_spike", "warning",
                f"CPU use jumped to {cores:.2f} cores (usually {b.mean:.2f})"))
    return out


# ---------------------------------------------------------------- edges


@rule("connect_failed")
def connection_failures(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Failed connects on an edge: critical when none succeeded, warning when
    at least ``edge_failure_ratio`` of the attempts failed."""
    out = []
    for u, v, target, data in edges_with_targets(G):
        found = edge_failure(ctx, target, data)
        if found and not clients_fault(G, ctx, u, v):
            severity, summary = found
            out.append(Finding(target, "connect_failed", severity,
                               f"{summary} (to {node_name(G, v)})"))
    return out


@rule("calls_unserved", intrinsic=True, caller_at_fault=True)
@rule("called_on_unserved_port")
def unserved_ports(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Refused connects to a port the server never served: the client and its
    edge are at fault; the server stays ok, with a note."""
    out, by_client, notes = [], {}, {}
    for (u, v), fails in sorted(port_failures(G, ctx).items()):
        bad = [f for f in fails if f.state == UNSERVED and f.refused > 0]
        if not bad:
            continue
        ports = ", ".join(str(f.port) for f in bad)
        noun = "port" if len(bad) == 1 else "ports"
        severity = _worst(f.severity for f in bad)
        reason = (f"calls {noun} {ports} on {node_name(G, v)}, which nothing "
                  f"serves ({bad[0].summary})")
        out.append(Finding(edge_target(u, v), "calls_unserved", severity, reason))
        by_client.setdefault(u, []).append((severity, reason))
        notes.setdefault(v, []).append(
            f"{node_name(G, u)} calls {noun} {ports}, which nothing serves "
            "(the client's fault)")
    for u, found in by_client.items():
        out.append(Finding(u, "calls_unserved", _worst(s for s, _ in found),
                           "; ".join(r for _, r in found)))
    for v, texts in notes.items():
        out.append(Finding(v, "called_on_unserved_port", "note", "; ".join(texts)))
    return out


@rule("service_stopped", intrinsic=True)
def stopped_services(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Refused connects to a port the server served before and no longer
    does, while it runs: the server's fault (a fact, raised at once)."""
    stopped: dict[str, dict[int, float | None]] = {}
    for (_u, v), fails in port_failures(G, ctx).items():
        for f in fails:
            if f.state == STOPPED and f.refused > 0:
                stopped.setdefault(v, {})[f.port] = f.served_until
    out = []
    for v, ports in sorted(stopped.items()):
        parts = [f"service :{port} stopped listening "
                 + (f"(was served until {_clock(until)})" if until
                    else "(was served before)")
                 for port, until in sorted(ports.items())]
        out.append(Finding(v, "service_stopped", "critical", "; ".join(parts),
                           hard=True))
    return out


@rule("dependency_failing")
def failing_dependencies(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """A caller whose connects to a server all fail (through no fault of its
    own): it is degraded, and the cause is further down."""
    out = []
    for n, data in nodes_of_type(G, "container", "process"):
        if data.get("state") in NOT_RUNNING:
            continue
        failing = []
        for v in G.successors(n):
            if v == n or clients_fault(G, ctx, n, v):
                continue
            found = edge_failure(ctx, edge_target(n, v), G.edges[n, v])
            if found and found[0] == "critical":
                failing.append(f"calls {node_name(G, v)}, which fails: {found[1]}")
        if failing:
            out.append(Finding(n, "dependency_failing", "warning",
                               "; ".join(failing[:3])))
    return out


@rule("resets", baseline="resets_per_s")
def connection_resets(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Resets on an edge well above the edge's usual rate."""
    conf, out = ctx.config, []
    for _u, v, target, data in edges_with_targets(G):
        b = ctx.memory.baselines.warm(target, "resets_per_s", ctx.now)
        if b is None:
            continue
        resets = ctx.memory.window_sum(target, data, _failure_horizon(ctx),
                                       "resets")
        rate = resets / conf.failure_window
        if resets >= conf.reset_min_count and rate >= conf.reset_factor * b.mean:
            out.append(Finding(
                target, "resets", "warning",
                f"connections reset: {resets:.0f} resets in the last "
                f"{conf.failure_window:.0f} s (to {node_name(G, v)})"))
    return out


@rule("traffic_stopped", baseline="active")
def traffic_stopped(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """An edge that carried traffic nearly every interval has gone silent."""
    conf, out = ctx.config, []
    for u, v, target, data in edges_with_targets(G):
        if carries_traffic(data) or cannot_be_sending(G.nodes[u]):
            continue
        b = ctx.memory.baselines.warm(target, "active", ctx.now)
        last = ctx.memory.last_active.get(target)
        if b is None or last is None or b.mean < conf.traffic_active_fraction:
            continue
        if edge_failure(ctx, target, data):
            continue  # the failures are the better reason
        quiet = ctx.now - last
        if quiet >= conf.traffic_stopped_seconds:
            usual = ctx.memory.baselines.get(target, "connections_per_s")
            tail = f" (usually {usual.mean:.1f} connects/s)" if usual else ""
            out.append(Finding(
                target, "traffic_stopped", "warning",
                f"traffic to {node_name(G, v)} stopped {quiet:.0f} s ago{tail}"))
    return out


@rule("slow_connect", baseline="connect_latency_us")
def slow_connects(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Mean connect latency over the window well above the edge's baseline."""
    conf, out = ctx.config, []
    for _u, v, target, data in edges_with_targets(G):
        b = ctx.memory.baselines.warm(target, "connect_latency_us", ctx.now)
        if b is None:
            continue
        sums = window_sums(ctx, target, data)
        count = sums.get("connect_latency_count", 0)
        if count <= 0:
            continue
        latency = sums.get("connect_latency_us_sum", 0) / count
        if is_spike(b, latency, conf.slow_connect_factor, conf.spike_zscore,
                    conf.slow_connect_min_us):
            out.append(Finding(
                target, "slow_connect", "warning",
                f"slow connects to {node_name(G, v)}: {latency / 1000:.1f} ms "
                f"(usually {b.mean / 1000:.1f} ms)"))
    return out


@rule("spike_connections_per_s", baseline="connections_per_s")
@rule("spike_bytes_per_s", baseline="bytes_per_s")
def rate_spike(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Connections/s or bytes/s on an edge jumped well above its baseline."""
    conf, out = ctx.config, []
    for _u, v, target, data in edges_with_targets(G):
        for metric, floor, unit in (
            ("connections_per_s", conf.spike_min_connections_per_s, "connects/s"),
            ("bytes_per_s", conf.spike_min_bytes_per_s, "bytes/s"),
        ):
            value = edge_rate(data, metric)
            b = ctx.memory.baselines.warm(target, metric, ctx.now)
            if b is not None and is_spike(b, value, conf.spike_factor,
                                          conf.spike_zscore, floor):
                out.append(Finding(
                    target, f"spike_{metric}", "warning",
                    f"{unit} to {node_name(G, v)} jumped to {value:,.0f} "
                    f"(usually {b.mean:,.0f})"))
    return out


# ---------------------------------------------------------------- services


@rule("service_down", intrinsic=True)
@rule("service_failures")
def service_failures(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """A server whose clients fail to connect; critical when it is not even
    running or gone (a stopped or removed server that clients still call: a
    fact, raised at once). Refused connects to ports it never served are its
    clients' fault (``calls_unserved``), to ports it stopped serving its own
    (``service_stopped``)."""
    out = []
    for n, data in G.nodes(data=True):
        if data.get("type") not in ("container", "process", "external"):
            continue
        failing, callers, kinds, worst = [], 0, {}, "warning"
        for u in G.predecessors(n):
            callers += 1
            edge = G.edges[u, n]
            found = edge_failure(ctx, edge_target(u, n), edge)
            if found and servers_own_fault(G, ctx, u, n):
                continue
            if found:
                failing.append(node_name(G, u))
                worst = "critical" if found[0] == "critical" else worst
                sums = window_sums(ctx, edge_target(u, n), edge)
                for k, _ in FAILURE_KINDS:
                    kinds[k] = kinds.get(k, 0) + sums.get(k, 0)
        if not failing:
            continue
        who = ", ".join(sorted(failing)[:5]) + (" ..." if len(failing) > 5 else "")
        what = failure_text(kinds)
        state = data.get("state")
        if data.get("type") == "container" and (state in NOT_RUNNING
                                                 or state is None):
            # No record: removed (or recreated under a new id), so gone.
            out.append(Finding(
                n, "service_down", "critical",
                f"{state or 'gone'} while {len(failing)} client(s) still "
                f"connect: {what} from {who}", hard=True))
        else:
            out.append(Finding(
                n, "service_failures", worst,
                f"{what} from {len(failing)} of {callers} client(s): {who}"))
    return out


# ---------------------------------------------------------------- hosts


@rule("host_memory", intrinsic=True)
@rule("host_load", intrinsic=True)
@rule("host_disk", intrinsic=True)
def host_pressure(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Host memory, load and disk."""
    conf, out = ctx.config, []
    for n, data in nodes_of_type(G, "host"):
        m = metrics_of(data)
        avail = number(m.get("memory_available_bytes"))
        total = number(m.get("memory_total_bytes"))
        if avail is not None and total:
            ratio = avail / total
            if ratio <= conf.host_memory_available_ratio:
                sev = ("critical" if ratio <= conf.host_memory_critical_ratio
                       else "warning")
                out.append(Finding(
                    n, "host_memory", sev,
                    f"host memory low: {_size(avail)} available "
                    f"({ratio:.0%} of {_size(total)})"))
        load, cpus = number(m.get("load1")), number(m.get("cpus"))
        if load is not None and cpus and load / cpus >= conf.host_load_per_cpu:
            out.append(Finding(
                n, "host_load", "warning",
                f"host load high: {load:.1f} on {cpus:.0f} CPUs"))
        disk = number(m.get("disk_used_ratio"))
        if disk is not None and disk >= conf.host_disk_ratio:
            sev = "critical" if disk >= conf.host_disk_critical_ratio else "warning"
            out.append(Finding(n, "host_disk", sev,
                               f"host disk {disk:.0%} full"))
    return out


def baseline_warming(G: nx.DiGraph, ctx: Context, target: str, name: str) -> bool:
    """Whether rule ``name`` is silent on a target only because the baseline it
    judges by is not warm yet: it has the rule's input, which is learned."""
    known = RULES.get(name)
    metric = known.baseline if known else None
    if metric is None or ctx.memory.baselines.warm(target, metric, ctx.now):
        return False
    u, v = parse_target(target)
    if v is None:
        return u in G and number(metrics_of(G.nodes[u]).get(metric)) is not None
    if not G.has_edge(u, v):
        return False
    if name == "traffic_stopped":
        return not cannot_be_sending(G.nodes[u])
    if name == "slow_connect":
        sums = window_sums(ctx, target, G.edges[u, v])
        return sums.get("connect_latency_count", 0) > 0
    return True


def _run(check: Check, G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """The check's findings; a rule it did not register is its bug."""
    findings = check.find(G, ctx)
    undeclared = {f.rule for f in findings} - check.rules
    if undeclared:
        raise RuleError(f"check {check.name} raised rule(s) "
                        f"{', '.join(sorted(undeclared))} it did not register")
    return findings


def evaluate_rules(G: nx.DiGraph, ctx: Context,
                   checks: Sequence[Check] | None = None) -> RuleResults:
    """Every check's findings, at most one per (target, rule), and the names
    of the checks that failed (``CHECKS`` when ``checks`` is None)."""
    found: dict[tuple[str, str], Finding] = {}
    failed: list[CheckFailure] = []
    for check in CHECKS if checks is None else checks:
        try:
            findings = _run(check, G, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken check must not blind the rest
            log.exception("check %s (rules %s) failed; skipping it this step",
                          check.name, ", ".join(sorted(check.rules)))
            failed.append(CheckFailure.of(check.name, check.rules, exc))
            continue
        for f in findings:
            found.setdefault((f.target, f.rule), f)
    return RuleResults(list(found.values()), failed)
