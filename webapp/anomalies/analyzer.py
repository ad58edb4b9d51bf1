"""The analysis loop: read the live state, judge it, publish the verdict.

Every ``interval`` seconds the one analyzer holding the lock reads the live
state, builds the container graph, runs the rules, updates baselines, statuses
and the likely-cause ranking, writes them to Redis (see
``webapp.anomalies.keys``), appends the anomaly events, counts the rule
checks that raised (``webapp.anomalies.failures``: the step goes on without
them, and users see which) and sends one webhook notification per status
change. Other analyzers wait for the lock: one takes
over within ``lock_ttl`` seconds of the leader going away, and adopts the
anomalies it had published, so a takeover neither repeats nor loses them. An
adopted anomaly of a baseline rule is kept until the new leader's baseline is
warm; till then the target's samples are outliers, so a lasting problem is not
learned as normal (nor reported over) before ``baseline_relearn``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx
import redis

from collector.redis_client import REDIS_ERRORS, redis_client
from collector.schema import Keys
from webapp.anomalies.cause import rank_causes
from webapp.anomalies.config import Config, load_config
from webapp.anomalies.events import append_events
from webapp.anomalies.failures import CheckFailure, record_failures
from webapp.anomalies.history import StatusHistory
from webapp.anomalies.keys import AnalysisKeys
from webapp.anomalies.memory import Memory, remember
from webapp.anomalies.merge import read_analysis
from webapp.anomalies.notify import WebhookNotifier
from webapp.anomalies.rules import Context, Finding, baseline_warming, evaluate_rules
from webapp.anomalies.status import AnomalyEvent, StatusTracker, roll_up, target_name
from webapp.lease import Lease
from webapp.round_collector import RoundCollector
from webapp.topology.graph import build_graph, coarsen
from webapp.topology.store import read_state

__all__ = ["Analysis", "Analyzer"]

log = logging.getLogger("portolan.anomalies.analyzer")

@dataclass(slots=True)
class Analysis:
    """One step's outcome."""

    ts: float
    findings: list[Finding] = field(default_factory=list)
    events: list[AnomalyEvent] = field(default_factory=list)
    statuses: dict[str, dict] = field(default_factory=dict)  # targets not ok
    causes: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # own status changes
    failures: list[CheckFailure] = field(default_factory=list)  # raised, skipped

    @property
    def failed_checks(self) -> list[str]:
        return [f.check for f in self.failures]


class Analyzer:
    """Runs the analysis for one Redis key prefix; see the module docstring."""

    def __init__(
        self, client: redis.Redis, prefix: str = "portolan",
        config: Config | None = None, node_ttl: float = 30.0,
        notifier: WebhookNotifier | None = None, owner: str | None = None,
    ):
        self.client = client
        self.collector = RoundCollector()  # takes over only when asked
        self.config = config or load_config()
        self.keys = Keys(prefix)
        self.akeys = AnalysisKeys(prefix)
        self.node_ttl = node_ttl
        self._own_notifier = notifier is None and bool(self.config.webhook_url)
        if self._own_notifier:
            notifier = WebhookNotifier(
                self.config.webhook_url, self.config.webhook_timeout,
                self.config.webhook_retries, self.config.webhook_backoff)
        self.notifier = notifier
        self.lease = Lease(client, self.akeys.lock, self.config.lock_ttl, owner)
        self.owner = self.lease.owner
        self.leader = False
        # The analysis as it changes, for past views (issue 23).
        self.status_history = StatusHistory(client, prefix)
        # check name -> steps it raised in, since this process started
        self.check_failures: Counter[str] = Counter()
        self._reset()

    @classmethod
    def from_settings(cls, **overrides) -> Analyzer:
        """An analyzer for the Django settings' Redis, prefix and TTLs."""
        from django.conf import settings

        client = redis_client(settings.REDIS_URL, retries=3,
                              socket_connect_timeout=1.0, socket_timeout=3.0)
        analyzer = cls(client, settings.PORTOLAN["KEY_PREFIX"],
                       load_config({k: v for k, v in overrides.items()
                                    if v is not None}),
                       node_ttl=settings.PORTOLAN["NODE_TTL"])
        # Kept as long as the collectors' history (past views read both).
        analyzer.status_history.window = settings.PORTOLAN["HISTORY_WINDOW"]
        return analyzer

    def _reset(self) -> None:
        self.memory = Memory.new(self.config)
        self.tracker = StatusTracker(self.config.raise_after, self.config.clear_after)
        self.previous: dict[str, str] = {}  # target -> own status last published

    # ------------------------------------------------------------ leadership

    def acquire(self) -> bool:
        """Take or extend the analyzer lock; adopt the published state on gaining it."""
        held = self.lease.acquire()
        if held and not self.leader:
            self._reset()
            statuses, _ = read_analysis(self.client, self.akeys.prefix)
            for target, entry in statuses.items():
                for anomaly in entry.get("anomalies") or []:
                    self.tracker.seed(target, anomaly)
                if entry.get("own_status", "ok") != "ok":
                    self.previous[target] = entry["own_status"]
            log.info("analyzer %s is now the active analyzer", self.owner)
        elif not held and self.leader:
            log.info("analyzer %s lost the lock; standing by", self.owner)
        self.leader = held
        return held

    def release(self) -> None:
        """Give the lock up (only if it is still ours)."""
        self.lease.release()
        self.leader = False

    # ------------------------------------------------------------ one step

    def evaluate(self, G: nx.DiGraph, now: float,
                 services: nx.DiGraph | None = None) -> Analysis:
        """Judge one container graph (no Redis): rules, hysteresis, causes.
        ``services``, the service level of the same moment, tells which port
        each failure was to (whose fault it is)."""
        ctx = Context(self.config, self.memory, now, services)
        results = evaluate_rules(G, ctx)
        self.check_failures.update(results.failed_checks)
        findings = results.findings
        # An anomaly adopted on takeover whose rule needs a baseline this
        # analyzer has not learned yet is kept until it can be judged (the
        # target's samples meanwhile are outliers, see ``remember``), rather
        # than ended as if it were over.
        hold = {k for k in self.tracker.adopted_keys()
                if baseline_warming(G, ctx, *k)}
        events = self.tracker.update(findings, now, hold)
        self.memory.active = self.tracker.active_keys()
        remember(G, self.memory, self.config, now, services)
        own = self.tracker.own_statuses()
        statuses = roll_up(G, own)
        causes = rank_causes(G, statuses, self.config.top_causes)
        changes = []
        for target in sorted(set(self.previous) | set(own)):
            old = self.previous.get(target, "ok")
            new = own.get(target, {}).get("status", "ok")
            if old != new:
                changes.append({
                    "target": target, "name": target_name(G, target),
                    "from": old, "to": new,
                    "reasons": own.get(target, {}).get("reasons", []), "ts": now,
                })
        self.previous = {t: e["status"] for t, e in own.items()}
        return Analysis(now, findings, events, statuses, causes, changes,
                        results.failures)

    def step(self, now: float | None = None) -> Analysis | None:
        """One analysis step if this analyzer holds the lock, else None."""
        now = time.time() if now is None else now
        if not self.acquire():
            return None
        state = read_state(self.client, self.keys, self.node_ttl, now)
        S = build_graph(state, "service")
        G = coarsen(S, "container")  # the same as building it from the state
        analysis = self.evaluate(G, now, S)
        self.publish(analysis, G)
        self.notify(analysis)
        return analysis

    def publish(self, analysis: Analysis, G: nx.DiGraph) -> None:
        """Replace the statuses and causes in Redis, append the events and
        count the checks that raised (one transaction: the keys share a
        cluster slot)."""
        ttl = max(1, math.ceil(self.config.status_ttl))
        k = self.akeys
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(k.status)
        if analysis.statuses:
            pipe.hset(k.status, mapping={
                t: json.dumps(e, sort_keys=True) for t, e in analysis.statuses.items()
            })
            pipe.expire(k.status, ttl)
        pipe.set(k.causes, json.dumps({"ts": analysis.ts, "causes": analysis.causes},
                                      sort_keys=True), ex=ttl)
        names = {e.target: target_name(G, e.target) for e in analysis.events}
        append_events(pipe, k, analysis.events, self.config.events_maxlen, names)
        record_failures(pipe, k.failures, analysis.failures, analysis.ts)
        self.status_history.record(analysis.ts, analysis.statuses, analysis.causes,
                                   pipe)
        pipe.execute()
        if analysis.events:
            # Open maps redraw now rather than at the next collector report.
            # (After the transaction: a cluster transaction cannot PUBLISH.)
            self.client.publish(self.keys.changes,
                                json.dumps({"analysis": analysis.ts}))

    def notify(self, analysis: Analysis) -> None:
        """One webhook notification per status change."""
        if self.notifier is None:
            return
        top = analysis.causes[0] if analysis.causes else None
        for change in analysis.changes:
            self.notifier.notify({
                "type": "status_change", **change,
                "likely_cause": top and {k: top[k] for k in ("target", "name", "why")},
            })

    # ------------------------------------------------------------ the loop

    def run(self, duration: float | None = None, interval: float | None = None,
            stop: threading.Event | None = None) -> None:
        """Step every ``interval`` s for ``duration`` s (forever when None)."""
        interval = interval or self.config.interval
        stop = stop or threading.Event()
        deadline = None if duration is None else time.monotonic() + duration
        backoff = interval
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.step()
                    self.collector.after_round()
                    backoff = interval
                except REDIS_ERRORS as exc:
                    log.warning("analysis step failed (%s); retrying in %.1f s",
                                exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                except Exception:  # noqa: BLE001 - keep analysing; the log says why
                    log.exception("analysis step failed; retrying in %.1f s", backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        finally:
            self.release()
            if self._own_notifier and self.notifier is not None:
                self.notifier.close()
