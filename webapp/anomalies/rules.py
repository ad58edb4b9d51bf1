"""The rules: pure functions from the container graph and what the analysis
remembers of earlier steps to findings, each with a plain-language reason.

A rule is ``rule(G, ctx) -> list[Finding]`` and never changes ``ctx``; after
all rules ran, ``remember(G, ctx)`` folds the step into the memory (cumulative
counters, restart history, sliding windows, baselines) for the next one.

Hard findings (an OOM kill, a non-zero exit, a restart loop, a failing health
check) are facts and raise their anomaly at once; soft ones are raised only
when they persist (see ``webapp.anomalies.status``). Baseline rules stay quiet
until the baseline of their container or edge is warm.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import networkx as nx

from webapp.anomalies.baseline import Baselines, is_spike
from webapp.anomalies.config import Config
from webapp.anomalies.keys import edge_target, parse_target

__all__ = [
    "BASELINE_RULES",
    "RULES",
    "Context",
    "Finding",
    "Memory",
    "cannot_judge",
    "evaluate_rules",
    "remember",
]

log = logging.getLogger("portolan.anomalies.rules")

SEVERITIES = ("warning", "critical")
# Counters of an edge whose per-interval change the rules look at.
EDGE_COUNTERS = (
    "connections", "failed", "failed_refused", "failed_timeout",
    "failed_unreachable", "failed_other", "accepts", "resets",
    "connect_latency_us_sum", "connect_latency_count",
)
FAILURE_KINDS = (
    ("failed_refused", "connection refused"),
    ("failed_timeout", "connection timed out"),
    ("failed_unreachable", "host unreachable"),
    ("failed_other", "connect failed"),
)
ACTIVITY_RATES = ("connections_per_s", "accepts_per_s", "bytes_sent_per_s",
                  "bytes_received_per_s")
NOT_RUNNING = ("exited", "dead", "created", "paused")


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one target (a node id or ``edge_target``)."""

    target: str
    rule: str
    severity: str  # "warning" or "critical"
    reason: str
    hard: bool = False  # a fact: raise at once, without waiting for repeats


@dataclass(slots=True)
class Memory:
    """What the analysis keeps from one step to the next."""

    baselines: Baselines
    # target -> cumulative values seen at the previous step
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    # container -> [(time, restart_count)] within the restart window
    restarts: dict[str, deque] = field(default_factory=dict)
    oom_at: dict[str, float] = field(default_factory=dict)  # last OOM kill seen
    # edge -> [(time, {counter: delta})] within the failure window
    window: dict[str, deque] = field(default_factory=dict)
    last_active: dict[str, float] = field(default_factory=dict)  # edge traffic
    seen: dict[str, float] = field(default_factory=dict)  # target -> last seen
    # (target, rule) pairs whose anomaly is active: their targets' samples are
    # outliers, so the anomaly becomes the new normal only once it lasts
    # baseline_relearn.
    active: frozenset = frozenset()

    @classmethod
    def new(cls, config: Config) -> Memory:
        return cls(Baselines(config.baseline_halflife, config.warmup_seconds,
                             config.warmup_samples, config.baseline_relearn))


@dataclass(frozen=True, slots=True)
class Context:
    """The inputs of a rule besides the graph."""

    config: Config
    memory: Memory
    now: float


# ---------------------------------------------------------------- helpers


def _name(G: nx.DiGraph, node: str) -> str:
    return str(G.nodes[node].get("name") or node) if node in G else node


def _nodes(G: nx.DiGraph, *types: str):
    for n, data in G.nodes(data=True):
        if data.get("type") in types:
            yield n, data


def _metrics(data: dict) -> dict:
    return data.get("metrics") or {}


def _num(value) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable


def _growth(ctx: Context, target: str, name: str, value) -> float:
    """How much a cumulative value grew since the previous step (0 at first)."""
    prev = ctx.memory.counters.get(target, {}).get(name)
    if prev is None or value is None:
        return 0.0
    return value - prev if value >= prev else value  # a reset counter restarts


def edge_deltas(ctx: Context, target: str, data: dict) -> dict[str, float] | None:
    """Counter changes of an edge over the last step, None the first time."""
    prev = ctx.memory.counters.get(target)
    if prev is None:
        return None
    out = {}
    for name in EDGE_COUNTERS:
        cur, old = data.get(name, 0) or 0, prev.get(name, 0)
        out[name] = cur - old if cur >= old else cur
    return out


def _first_deltas(data: dict) -> dict[str, float]:
    """An edge seen for the first time: its totals, but only failures that are
    happening now (a non-zero rate) count, so old ones are not replayed."""
    out = {name: float(data.get(name, 0) or 0) for name in EDGE_COUNTERS}
    if not data.get("failed_per_s"):
        for name in ("failed", *(k for k, _ in FAILURE_KINDS)):
            out[name] = 0.0
    if not data.get("resets_per_s"):
        out["resets"] = 0.0
    return out


def _window(ctx: Context, target: str, data: dict) -> list[dict[str, float]]:
    """An edge's counter changes per step over the failure window, newest first."""
    current = edge_deltas(ctx, target, data)
    if current is None:
        current = _first_deltas(data)
    horizon = ctx.now - ctx.config.failure_window
    past = [d for ts, d in ctx.memory.window.get(target, ()) if ts > horizon]
    return [current, *reversed(past)]


def window_sums(ctx: Context, target: str, data: dict) -> dict[str, float]:
    """An edge's counter changes over the failure window, this step included."""
    sums: dict[str, float] = {}
    for deltas in _window(ctx, target, data):
        for name, value in deltas.items():
            sums[name] = sums.get(name, 0) + value
    return sums


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
    steps = _window(ctx, target, data)
    sums = window_sums(ctx, target, data)
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


# ---------------------------------------------------------------- containers


def exited_nonzero(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """A container that exited with a non-zero code."""
    out = []
    for n, data in _nodes(G, "container"):
        code = data.get("exit_code") or 0
        if data.get("state") in ("exited", "dead") and code != 0:
            hint = {137: " (killed)", 143: " (terminated)", 139: " (segfault)"}
            out.append(Finding(n, "exited", "critical",
                               f"exited with code {code}{hint.get(code, '')}",
                               hard=True))
    return out


def restart_loop(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Restart count grew by ``restart_count`` within ``restart_window``."""
    conf, out = ctx.config, []
    for n, data in _nodes(G, "container"):
        count = _num(_metrics(data).get("restart_count"))
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


def oom_killed(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """An OOM kill (the cgroup's oom_kill count grew) within ``oom_hold``."""
    out = []
    for n, data in _nodes(G, "container"):
        m = _metrics(data)
        kills = _num(m.get("memory_oom_kills"))
        # The count is for the container's lifetime: at first sight it tells
        # of kills long ago, so only its growth is a kill (as for edges).
        grown = _growth(ctx, n, "memory_oom_kills", kills)
        last = ctx.memory.oom_at.get(n)
        recent = last is not None and ctx.now - last <= ctx.config.oom_hold
        flagged = bool(m.get("oom_killed")) and data.get("state") in NOT_RUNNING
        if grown > 0 or recent or flagged:
            limit = _num(m.get("memory_limit_bytes"))
            tail = f" at its {_size(limit)} memory limit" if limit else ""
            total = f" ({kills:.0f} kills so far)" if kills and kills > 1 else ""
            out.append(Finding(n, "oom", "critical", f"OOM killed{tail}{total}",
                               hard=True))
    return out


def health_failing(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Docker's health check reports unhealthy."""
    return [
        Finding(n, "health", "critical", "health check failing (unhealthy)",
                hard=True)
        for n, data in _nodes(G, "container")
        if _metrics(data).get("health") == "unhealthy"
        and data.get("state") not in NOT_RUNNING
    ]


def memory_near_limit(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Working set at or above ``memory_ratio`` of the memory limit."""
    out = []
    for n, data in _nodes(G, "container"):
        m = _metrics(data)
        used = _num(m.get("memory_working_set_bytes"))
        limit = _num(m.get("memory_limit_bytes"))
        if used is None or not limit or data.get("state") in NOT_RUNNING:
            continue
        if used >= ctx.config.memory_ratio * limit:
            out.append(Finding(
                n, "memory", "warning",
                f"memory near its limit: {used / limit:.0%} of {_size(limit)}"))
    return out


def cpu_throttled(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """CPU throttled in at least ``cpu_throttled_ratio`` of the periods."""
    out = []
    for n, data in _nodes(G, "container"):
        m = _metrics(data)
        ratio = _num(m.get("cpu_throttled_ratio"))
        if ratio is None or data.get("state") in NOT_RUNNING:
            continue
        if ratio >= ctx.config.cpu_throttled_ratio:
            limit = _num(m.get("cpu_limit_cores"))
            tail = f" (limit {limit:g} cores)" if limit else ""
            out.append(Finding(
                n, "cpu_throttled", "warning",
                f"CPU throttled in {ratio:.0%} of periods{tail}"))
    return out


def cpu_spike(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """CPU use jumped well above the container's baseline."""
    conf, out = ctx.config, []
    for n, data in _nodes(G, "container"):
        cores = _num(_metrics(data).get("cpu_cores"))
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


def _edges(G: nx.DiGraph):
    for u, v, data in G.edges(data=True):
        yield u, v, edge_target(u, v), data


def connection_failures(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Failed connects on an edge: critical when none succeeded, warning when
    at least ``edge_failure_ratio`` of the attempts failed."""
    out = []
    for _u, v, target, data in _edges(G):
        found = edge_failure(ctx, target, data)
        if found:
            severity, summary = found
            out.append(Finding(target, "connect_failed", severity,
                               f"{summary} (to {_name(G, v)})"))
    return out


def connection_resets(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Resets on an edge well above the edge's usual rate."""
    conf, out = ctx.config, []
    for _u, v, target, data in _edges(G):
        b = ctx.memory.baselines.warm(target, "resets_per_s", ctx.now)
        if b is None:
            continue
        resets = window_sums(ctx, target, data).get("resets", 0)
        rate = resets / conf.failure_window
        if resets >= conf.reset_min_count and rate >= conf.reset_factor * b.mean:
            out.append(Finding(
                target, "resets", "warning",
                f"connections reset: {resets:.0f} resets in the last "
                f"{conf.failure_window:.0f} s (to {_name(G, v)})"))
    return out


def _active(data: dict) -> bool:
    return any((data.get(k) or 0) > 0 for k in ACTIVITY_RATES)


def _not_sending(client: dict) -> bool:
    """A client that cannot be sending: stopped, or a container without a
    record (removed, or recreated under a new id) whose old flows linger."""
    if client.get("state") in NOT_RUNNING:
        return True
    return client.get("type") == "container" and client.get("state") is None


def traffic_stopped(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """An edge that carried traffic nearly every interval has gone silent."""
    conf, out = ctx.config, []
    for u, v, target, data in _edges(G):
        if _active(data) or _not_sending(G.nodes[u]):
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
                f"traffic to {_name(G, v)} stopped {quiet:.0f} s ago{tail}"))
    return out


def slow_connects(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Mean connect latency over the window well above the edge's baseline."""
    conf, out = ctx.config, []
    for _u, v, target, data in _edges(G):
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
                f"slow connects to {_name(G, v)}: {latency / 1000:.1f} ms "
                f"(usually {b.mean / 1000:.1f} ms)"))
    return out


def rate_spike(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Connections/s or bytes/s on an edge jumped well above its baseline."""
    conf, out = ctx.config, []
    for _u, v, target, data in _edges(G):
        for metric, floor, unit in (
            ("connections_per_s", conf.spike_min_connections_per_s, "connects/s"),
            ("bytes_per_s", conf.spike_min_bytes_per_s, "bytes/s"),
        ):
            value = _edge_rate(data, metric)
            b = ctx.memory.baselines.warm(target, metric, ctx.now)
            if b is not None and is_spike(b, value, conf.spike_factor,
                                          conf.spike_zscore, floor):
                out.append(Finding(
                    target, f"spike_{metric}", "warning",
                    f"{unit} to {_name(G, v)} jumped to {value:,.0f} "
                    f"(usually {b.mean:,.0f})"))
    return out


def _edge_rate(data: dict, metric: str) -> float:
    if metric == "bytes_per_s":
        return float((data.get("bytes_sent_per_s") or 0)
                     + (data.get("bytes_received_per_s") or 0))
    return float(data.get(metric) or 0)


# ---------------------------------------------------------------- services


def service_failures(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """A server whose clients fail to connect; critical when it is not even
    running (a stopped server that clients still call)."""
    out = []
    for n, data in G.nodes(data=True):
        if data.get("type") not in ("container", "process", "external"):
            continue
        failing, callers, kinds, worst = [], 0, {}, "warning"
        for u in G.predecessors(n):
            callers += 1
            edge = G.edges[u, n]
            found = edge_failure(ctx, edge_target(u, n), edge)
            if found:
                failing.append(_name(G, u))
                worst = "critical" if found[0] == "critical" else worst
                sums = window_sums(ctx, edge_target(u, n), edge)
                for k, _ in FAILURE_KINDS:
                    kinds[k] = kinds.get(k, 0) + sums.get(k, 0)
        if not failing:
            continue
        who = ", ".join(sorted(failing)[:5]) + (" ..." if len(failing) > 5 else "")
        what = failure_text(kinds)
        state = data.get("state")
        if data.get("type") == "container" and state in NOT_RUNNING:
            out.append(Finding(
                n, "service_down", "critical",
                f"{state} while {len(failing)} client(s) still connect: "
                f"{what} from {who}"))
        else:
            out.append(Finding(
                n, "service_failures", worst,
                f"{what} from {len(failing)} of {callers} client(s): {who}"))
    return out


# ---------------------------------------------------------------- hosts


def host_pressure(G: nx.DiGraph, ctx: Context) -> list[Finding]:
    """Host memory, load and disk."""
    conf, out = ctx.config, []
    for n, data in _nodes(G, "host"):
        m = _metrics(data)
        avail = _num(m.get("memory_available_bytes"))
        total = _num(m.get("memory_total_bytes"))
        if avail is not None and total:
            ratio = avail / total
            if ratio <= conf.host_memory_available_ratio:
                sev = ("critical" if ratio <= conf.host_memory_critical_ratio
                       else "warning")
                out.append(Finding(
                    n, "host_memory", sev,
                    f"host memory low: {_size(avail)} available "
                    f"({ratio:.0%} of {_size(total)})"))
        load, cpus = _num(m.get("load1")), _num(m.get("cpus"))
        if load is not None and cpus and load / cpus >= conf.host_load_per_cpu:
            out.append(Finding(
                n, "host_load", "warning",
                f"host load high: {load:.1f} on {cpus:.0f} CPUs"))
        disk = _num(m.get("disk_used_ratio"))
        if disk is not None and disk >= conf.host_disk_ratio:
            sev = "critical" if disk >= conf.host_disk_critical_ratio else "warning"
            out.append(Finding(n, "host_disk", sev,
                               f"host disk {disk:.0%} full"))
    return out


RULES = (
    exited_nonzero,
    restart_loop,
    oom_killed,
    health_failing,
    memory_near_limit,
    cpu_throttled,
    cpu_spike,
    connection_failures,
    connection_resets,
    traffic_stopped,
    slow_connects,
    rate_spike,
    service_failures,
    host_pressure,
)
# Rules that speak of a node's own trouble rather than of its clients'.
INTRINSIC_RULES = frozenset({
    "exited", "restart_loop", "oom", "health", "memory", "cpu_throttled",
    "cpu_spike", "service_down", "host_memory", "host_load", "host_disk",
})


# Rules that judge by a baseline, and the series each one needs warm.
BASELINE_RULES = {
    "cpu_spike": "cpu_cores",
    "resets": "resets_per_s",
    "traffic_stopped": "active",
    "slow_connect": "connect_latency_us",
    "spike_connections_per_s": "connections_per_s",
    "spike_bytes_per_s": "bytes_per_s",
}


def cannot_judge(G: nx.DiGraph, ctx: Context, target: str, rule: str) -> bool:
    """Whether ``rule`` is silent on a target only because the baseline it
    judges by is not warm yet: it has the rule's input, which is learned."""
    metric = BASELINE_RULES.get(rule)
    if metric is None or ctx.memory.baselines.warm(target, metric, ctx.now):
        return False
    u, v = parse_target(target)
    if v is None:
        return u in G and _num(_metrics(G.nodes[u]).get(metric)) is not None
    if not G.has_edge(u, v):
        return False
    if rule == "traffic_stopped":
        return not _not_sending(G.nodes[u])
    if rule == "slow_connect":
        sums = window_sums(ctx, target, G.edges[u, v])
        return sums.get("connect_latency_count", 0) > 0
    return True


def evaluate_rules(G: nx.DiGraph, ctx: Context, rules=RULES) -> list[Finding]:
    """Every rule's findings, at most one per (target, rule)."""
    found: dict[tuple[str, str], Finding] = {}
    for rule in rules:
        try:
            results = rule(G, ctx)
        except Exception:  # noqa: BLE001 - one broken rule must not blind the rest
            log.exception("rule %s failed; skipping it this step", rule.__name__)
            continue
        for f in results:
            found.setdefault((f.target, f.rule), f)
    return list(found.values())


# ---------------------------------------------------------------- memory


def _learn(ctx: Context, target: str, metric: str, value: float, floor: float,
           factor: float | None = None, frozen: bool = False) -> None:
    """Add a sample to a baseline, marking it an outlier when it is a spike or
    its target is ``frozen`` (so it is learned only once it lasts)."""
    conf = ctx.config
    b = ctx.memory.baselines.warm(target, metric, ctx.now)
    outlier = frozen or (b is not None and is_spike(
        b, value, factor or conf.spike_factor, conf.spike_zscore, floor))
    ctx.memory.baselines.update(target, metric, value, ctx.now, outlier=outlier)


def remember(G: nx.DiGraph, ctx: Context) -> None:
    """Fold this step into ``ctx.memory``: the only place it changes."""
    mem, conf, now = ctx.memory, ctx.config, ctx.now
    frozen = {t for t, _ in mem.active}
    for n, data in G.nodes(data=True):
        m = _metrics(data)
        mem.seen[n] = now
        if data.get("type") != "container":
            continue
        kills = _num(m.get("memory_oom_kills"))
        if _growth(ctx, n, "memory_oom_kills", kills) > 0:
            mem.oom_at[n] = now
        count = _num(m.get("restart_count"))
        if count is not None:
            history = mem.restarts.setdefault(n, deque())
            history.append((now, count))
            while history and history[0][0] < now - conf.restart_window:
                history.popleft()
        cores = _num(m.get("cpu_cores"))
        if cores is not None:
            _learn(ctx, n, "cpu_cores", cores, conf.spike_min_cpu_cores,
                   frozen=n in frozen)
        mem.counters[n] = {"memory_oom_kills": kills}
    for _u, _v, target, data in _edges(G):
        mem.seen[target] = now
        deltas = edge_deltas(ctx, target, data)
        if deltas is None:
            deltas = _first_deltas(data)
        window = mem.window.setdefault(target, deque())
        window.append((now, deltas))
        while window and window[0][0] <= now - conf.failure_window:
            window.popleft()
        active = _active(data)
        if active:
            mem.last_active[target] = now
        # While the edge has an active anomaly its samples are outliers: not
        # learned as the new normal, unless the change lasts baseline_relearn.
        held = target in frozen
        mem.baselines.update(target, "active", 1.0 if active else 0.0, now,
                             outlier=held)
        _learn(ctx, target, "connections_per_s",
               _edge_rate(data, "connections_per_s"),
               conf.spike_min_connections_per_s, frozen=held)
        _learn(ctx, target, "bytes_per_s", _edge_rate(data, "bytes_per_s"),
               conf.spike_min_bytes_per_s, frozen=held)
        _learn(ctx, target, "resets_per_s", float(data.get("resets_per_s") or 0),
               float(conf.reset_min_count) / conf.failure_window,
               conf.reset_factor, frozen=held)
        if deltas.get("connect_latency_count", 0) > 0:
            _learn(ctx, target, "connect_latency_us",
                   deltas["connect_latency_us_sum"]
                   / deltas["connect_latency_count"],
                   conf.slow_connect_min_us, conf.slow_connect_factor, frozen=held)
        mem.counters[target] = {k: data.get(k, 0) or 0 for k in EDGE_COUNTERS}
    stale = [t for t, seen in mem.seen.items() if now - seen > conf.forget_after]
    for t in stale:
        for table in (mem.seen, mem.counters, mem.restarts, mem.oom_at, mem.window,
                      mem.last_active):
            table.pop(t, None)
    mem.baselines.forget(stale)
