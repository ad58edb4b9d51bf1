"""The analyzer's evaluation step (no Redis): rules, hysteresis and learning."""

from unittest.mock import MagicMock

import pytest

from tests.unit.test_anomaly_rules import cid, graph, steady_edge
from webapp.anomalies.analyzer import Analyzer
from webapp.anomalies.config import Config
from webapp.anomalies.keys import edge_target
from webapp.anomalies.rules import CHECKS, Check

EDGE = edge_target(cid("api"), cid("db"))


class CheckedAnalyzer(Analyzer):
    """An analyzer whose every step fails the test if a check raised."""

    def evaluate(self, G, now):
        analysis = super().evaluate(G, now)
        assert analysis.failed_checks == [], analysis.failed_checks
        return analysis


def analyzer(**overrides):
    conf = Config(**{"warmup_seconds": 5, "warmup_samples": 5,
                     "baseline_halflife": 30, **overrides})
    return CheckedAnalyzer(MagicMock(), config=conf)


def chain(t, rate=10.0):
    return graph([("api", {}), ("db", {})], [("api", "db", steady_edge(t, rate))])


def test_a_lasting_rate_change_on_an_edge_is_relearned():
    """An edge's anomaly keeps its baseline from learning the change only
    until it lasts baseline_relearn: then it is the new normal, as for CPU."""
    a = analyzer(baseline_relearn=60)
    for t in range(40):
        assert not a.evaluate(chain(t), t).statuses
    # From t=40 the edge carries 100 connects/s instead of 10, for good: a
    # spike (raised at the second step) that lasts past baseline_relearn.
    a.evaluate(chain(40, 100.0), 40)
    for t in range(41, 100):
        assert EDGE in a.evaluate(chain(t, 100.0), t).statuses, t
    for t in range(100, 400):
        analysis = a.evaluate(chain(t, 100.0), t)
    assert not analysis.statuses
    assert a.memory.baselines.get(EDGE, "connections_per_s").mean > 90


def _stopped(t):
    """The edge's counters frozen at ``t`` and its rates zero: traffic stopped."""
    return {k: (0 if k.endswith("_per_s") else v) for k, v in steady_edge(t).items()}


@pytest.mark.parametrize("kind", ["traffic_stopped", "cpu_spike"])
def test_a_takeover_neither_ends_an_adopted_baseline_anomaly_nor_learns_it(
        kind, monkeypatch):
    """The new leader has no baselines: an adopted anomaly of a baseline rule
    is kept while the problem lasts (no false 'ok'), and becomes the new
    normal only once it lasts baseline_relearn, as for the old leader."""
    relearn, slow = 60, {"baseline_halflife": 120}  # slow: stays 'usually active'

    def state(t, bad):
        if kind == "cpu_spike":
            return graph([("api", {"metrics": {"cpu_cores": 2.0 if bad else 0.2}})])
        edge = _stopped(199) if bad else steady_edge(t)
        return graph([("api", {}), ("db", {})], [("api", "db", edge)])

    target = cid("api") if kind == "cpu_spike" else EDGE
    old = analyzer(baseline_relearn=relearn, **slow)
    for t in range(200):
        assert not old.evaluate(state(t, False), t).statuses
    for t in range(200, 230):
        published = old.evaluate(state(t, True), t).statuses
    assert [a["rule"] for a in published[target]["anomalies"]] == [kind]

    new = analyzer(baseline_relearn=relearn, **slow)
    monkeypatch.setattr("webapp.anomalies.analyzer.read_analysis",
                        lambda client, prefix: (published, []))
    new.acquire()  # a takeover: adopts what the old leader published
    changes, ended = [], []
    for t in range(230, 230 + relearn):
        analysis = new.evaluate(state(t, True), t)
        changes += analysis.changes
        ended += [e for e in analysis.events if e.kind == "ended"]
    assert changes == [] and ended == []
    assert new.previous[target] == "warning"
    # Past baseline_relearn the lasting change is the new normal and ends once.
    for t in range(230 + relearn, 230 + 3 * relearn):
        changes += new.evaluate(state(t, True), t).changes
    assert [(c["target"], c["to"]) for c in changes] == [(target, "ok")]


def test_an_adopted_baseline_anomaly_is_not_held_without_its_input():
    """Held only while the rule has something to judge: a container that
    stopped (no CPU figure) ends its adopted CPU spike as the old leader would."""
    a = analyzer(baseline_relearn=60, clear_after=3)
    a.tracker.seed(cid("api"), {"rule": "cpu_spike", "severity": "warning",
                                "reason": "CPU use jumped", "since": 0.0})
    a.previous[cid("api")] = "warning"
    G = graph([("api", {"state": "exited"})])
    changes = [c for t in range(1, 4) for c in a.evaluate(G, t).changes]
    assert [(c["target"], c["to"]) for c in changes] == [(cid("api"), "ok")]


def test_a_check_that_raises_is_counted_and_the_step_goes_on(monkeypatch):
    """The analyzer keeps judging with the other checks, and says which one
    failed in the step's result and in its running count."""
    def broken(G, ctx):
        raise KeyError("metrics")

    monkeypatch.setattr("webapp.anomalies.rules.CHECKS",
                        [*CHECKS, Check(broken, frozenset({"broken"}))])
    a = Analyzer(MagicMock(), config=Config())
    G = graph([("job", {"state": "exited", "exit_code": 1})])
    for t in range(2):
        analysis = a.evaluate(G, t)
        assert analysis.failed_checks == ["broken"]
        assert [(f.rules, f.error) for f in analysis.failures] == [
            (("broken",), "KeyError: 'metrics'")]
        assert analysis.statuses[cid("job")]["status"] == "critical"
    assert a.check_failures == {"broken": 2}
