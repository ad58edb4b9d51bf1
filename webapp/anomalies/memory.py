"""What the analysis remembers from one step to the next, and how a step is
folded into it.

The rules only read the memory (what a counter was at the previous step, an
edge's changes over the failure window, the baselines); ``remember`` is the
only place it changes, once every rule has judged the step. While a target has
an active anomaly (``Memory.active``, set by the analyzer) its samples are
outliers: the anomaly becomes the new normal only once it lasts
``baseline_relearn``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import networkx as nx

from webapp.anomalies.attributes import (
    carries_traffic,
    edge_rate,
    edges_with_targets,
    metrics_of,
    number,
)
from webapp.anomalies.baseline import Baselines, is_spike
from webapp.anomalies.blame import served_now
from webapp.anomalies.config import Config
from webapp.anomalies.keys import edge_target

__all__ = ["EDGE_COUNTERS", "Memory", "first_deltas", "remember"]

# Counters of an edge whose per-interval change the rules look at.
EDGE_COUNTERS = (
    "connections", "failed", "failed_refused", "failed_timeout",
    "failed_unreachable", "failed_other", "accepts", "resets",
    "connect_latency_us_sum", "connect_latency_count",
)
FAILURE_COUNTERS = tuple(name for name in EDGE_COUNTERS if name.startswith("failed"))
_NEVER: dict = {}


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
    # edge -> {counter: time of the latest step in its window that changed it}
    # (most edges never fail: their window needs no summing to say so)
    changed_at: dict[str, dict[str, float]] = field(default_factory=dict)
    last_active: dict[str, float] = field(default_factory=dict)  # edge traffic
    seen: dict[str, float] = field(default_factory=dict)  # target -> last seen
    # container -> {port: last time it was seen served}: whether a refused
    # port was served before (the server's fault) or never (the client's).
    served: dict[str, dict[int, float]] = field(default_factory=dict)
    # (target, rule) pairs whose anomaly is active: their targets' samples are
    # outliers, so the anomaly becomes the new normal only once it lasts
    # baseline_relearn.
    active: frozenset = frozenset()

    @classmethod
    def new(cls, config: Config) -> Memory:
        return cls(Baselines(config.baseline_halflife, config.warmup_seconds,
                             config.warmup_samples, config.baseline_relearn))

    def growth(self, target: str, name: str, value: float | None) -> float:
        """How much a cumulative value grew since the previous step (0 at first)."""
        prev = self.counters.get(target, {}).get(name)
        if prev is None or value is None:
            return 0.0
        return value - prev if value >= prev else value  # a reset counter restarts

    def edge_deltas(self, target: str, data: dict) -> dict[str, float] | None:
        """Counter changes of an edge over the last step, None the first time."""
        prev = self.counters.get(target)
        return None if prev is None else _deltas(prev, data)[0]

    def recent_edge_deltas(self, target: str, data: dict,
                           since: float) -> list[dict[str, float]]:
        """An edge's counter changes per step after ``since``, this step
        included, newest first."""
        current = self.edge_deltas(target, data)
        if current is None:
            current = first_deltas(data)
        past = [d for ts, d in self.window.get(target, ()) if ts > since]
        return [current, *reversed(past)]

    def window_sum(self, target: str, data: dict, since: float, name: str) -> float:
        """One counter's change after ``since``, this step included (as
        ``window_sums(...)[name]``, without summing a window that never
        changed it)."""
        prev = self.counters.get(target)
        if prev is None:
            current = first_deltas(data)[name]
        else:
            cur, old = data.get(name, 0) or 0, prev.get(name, 0)
            current = cur - old if cur >= old else cur
        if self.changed_at.get(target, _NEVER).get(name, -math.inf) <= since:
            return current
        return current + sum(d.get(name, 0) for ts, d in self.window[target]
                             if ts > since)

    def window_sums(self, target: str, data: dict, since: float) -> dict[str, float]:
        """An edge's counter changes after ``since``, this step included."""
        sums: dict[str, float] = {}
        for deltas in self.recent_edge_deltas(target, data, since):
            for name, value in deltas.items():
                sums[name] = sums.get(name, 0) + value
        return sums


def _deltas(prev: dict, data: dict) -> tuple[dict[str, float], bool]:
    """An edge's counter changes since ``prev``, and whether any counter
    moved (a counter reset to 0 moved, though it changed by nothing)."""
    out, moved = {}, False
    for name in EDGE_COUNTERS:
        cur, old = data.get(name, 0) or 0, prev.get(name, 0)
        if cur != old:
            moved = True
        out[name] = cur - old if cur >= old else cur
    return out, moved


def first_deltas(data: dict) -> dict[str, float]:
    """An edge seen for the first time: its totals, but only failures that are
    happening now (a non-zero rate) count, so old ones are not replayed.

    >>> first_deltas({"connections": 9, "failed": 4})["failed"]
    0.0
    """
    out = {name: float(data.get(name, 0) or 0) for name in EDGE_COUNTERS}
    if not data.get("failed_per_s"):
        for name in FAILURE_COUNTERS:
            out[name] = 0.0
    if not data.get("resets_per_s"):
        out["resets"] = 0.0
    return out


def _learn(memory: Memory, config: Config, now: float, target: str, metric: str,
           value: float, floor: float, factor: float | None = None,
           frozen: bool = False) -> None:
    """Add a sample to a baseline, marking it an outlier when it is a spike or
    its target is ``frozen`` (so it is learned only once it lasts)."""
    b = memory.baselines.warm(target, metric, now)
    outlier = frozen or (b is not None and is_spike(
        b, value, factor or config.spike_factor, config.spike_zscore, floor))
    memory.baselines.update(target, metric, value, now, outlier=outlier)


def _remember_window(mem: Memory, config: Config, now: float, target: str,
                     data: dict) -> dict[str, float]:
    """Append an edge's changes of this step to its failure window, and keep
    its counters for the next step's; this step's changes.

    A step that changed nothing is not appended (the window's readers sum
    changes and look for steps with some: a missing step reads as one of
    zeros), and counters that did not move are not copied again: at 10,000
    containers ~95 % of 100,000 edges, each step.
    """
    mem.seen[target] = now
    prev = mem.counters.get(target)
    if prev is None:
        deltas, moved = first_deltas(data), True
    else:
        deltas, moved = _deltas(prev, data)
    window = mem.window.get(target)
    changed = [name for name, value in deltas.items() if value]
    if changed:
        if window is None:
            window = mem.window[target] = deque()
        window.append((now, deltas))
        mem.changed_at.setdefault(target, {}).update(dict.fromkeys(changed, now))
    while window and window[0][0] <= now - config.failure_window:
        window.popleft()
    if moved:
        mem.counters[target] = {k: data.get(k, 0) or 0 for k in EDGE_COUNTERS}
    return deltas


def remember(G: nx.DiGraph, memory: Memory, config: Config, now: float,
             services: nx.DiGraph | None = None) -> None:
    """Fold this step into ``memory``: the only place it changes.

    ``services``, the service-level graph of the same moment, adds each
    client -> service edge's failure window (failures by port).
    """
    mem, conf = memory, config
    frozen = {t for t, _ in mem.active}
    for n, data in G.nodes(data=True):
        m = metrics_of(data)
        mem.seen[n] = now
        if data.get("type") != "container":
            continue
        for port in served_now(data) or ():
            mem.served.setdefault(n, {})[port] = now
        kills = number(m.get("memory_oom_kills"))
        if mem.growth(n, "memory_oom_kills", kills) > 0:
            mem.oom_at[n] = now
        count = number(m.get("restart_count"))
        if count is not None:
            history = mem.restarts.setdefault(n, deque())
            history.append((now, count))
            while history and history[0][0] < now - conf.restart_window:
                history.popleft()
        cores = number(m.get("cpu_cores"))
        if cores is not None:
            _learn(mem, conf, now, n, "cpu_cores", cores, conf.spike_min_cpu_cores,
                   frozen=n in frozen)
        mem.counters[n] = {"memory_oom_kills": kills}
    for u, s, data in services.edges(data=True) if services is not None else ():
        if services.nodes[s].get("type") == "service":
            _remember_window(mem, conf, now, edge_target(u, s), data)
    for _u, _v, target, data in edges_with_targets(G):
        deltas = _remember_window(mem, conf, now, target, data)
        active = carries_traffic(data)
        if active:
            mem.last_active[target] = now
        # While the edge has an active anomaly its samples are outliers: not
        # learned as the new normal, unless the change lasts baseline_relearn.
        held = target in frozen
        mem.baselines.update(target, "active", 1.0 if active else 0.0, now,
                             outlier=held)
        _learn(mem, conf, now, target, "connections_per_s",
               edge_rate(data, "connections_per_s"),
               conf.spike_min_connections_per_s, frozen=held)
        _learn(mem, conf, now, target, "bytes_per_s", edge_rate(data, "bytes_per_s"),
               conf.spike_min_bytes_per_s, frozen=held)
        _learn(mem, conf, now, target, "resets_per_s",
               float(data.get("resets_per_s") or 0),
               float(conf.reset_min_count) / conf.failure_window,
               conf.reset_factor, frozen=held)
        if deltas.get("connect_latency_count", 0) > 0:
            _learn(mem, conf, now, target, "connect_latency_us",
                   deltas["connect_latency_us_sum"]
                   / deltas["connect_latency_count"],
                   conf.slow_connect_min_us, conf.slow_connect_factor, frozen=held)
    stale = [t for t, seen in mem.seen.items() if now - seen > conf.forget_after]
    for t in stale:
        for table in (mem.seen, mem.counters, mem.restarts, mem.oom_at, mem.window,
                      mem.changed_at, mem.last_active, mem.served):
            table.pop(t, None)
    mem.baselines.forget(stale)
