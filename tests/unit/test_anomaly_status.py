"""Hysteresis: anomalies raise late (soft) or at once (hard), clear late, and
never flap; statuses roll up to hosts."""

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.anomalies.keys import edge_target
from webapp.anomalies.rules import Finding
from webapp.anomalies.status import StatusTracker, roll_up

T = "container:h:a"


def soft(severity="warning", reason="CPU throttled"):
    return Finding(T, "cpu_throttled", severity, reason)


def hard():
    return Finding(T, "oom", "critical", "OOM killed", hard=True)


def feed(tracker, inputs):
    """Kinds of events, one list per evaluation."""
    return [[e.kind for e in tracker.update(findings, float(i))]
            for i, findings in enumerate(inputs)]


def test_soft_signal_raises_after_n_and_clears_after_m():
    tr = StatusTracker(raise_after=3, clear_after=2)
    kinds = feed(tr, [[soft()]] * 3 + [[]] * 2)
    assert kinds == [[], [], ["started"], [], ["ended"]]


def test_hard_fact_raises_at_once():
    tr = StatusTracker(raise_after=3, clear_after=2)
    assert feed(tr, [[hard()]]) == [["started"]]
    assert tr.own_statuses() == {T: {
        "status": "critical", "reasons": ["OOM killed"],
        "anomalies": [{"rule": "oom", "severity": "critical",
                       "reason": "OOM killed", "since": 0.0}]}}


def test_severity_rises_at_once_and_falls_late():
    tr = StatusTracker(raise_after=1, clear_after=3)
    kinds = feed(tr, [[soft()], [soft("critical")], [soft()], [soft()], [soft()]])
    assert kinds == [["started"], ["changed"], [], [], ["changed"]]
    assert tr.own_statuses()[T]["status"] == "warning"


def test_reason_text_follows_the_finding():
    tr = StatusTracker(raise_after=1, clear_after=3)
    tr.update([soft(reason="CPU throttled in 30% of periods")], 0)
    tr.update([soft(reason="CPU throttled in 40% of periods")], 1)
    assert tr.own_statuses()[T]["reasons"] == ["CPU throttled in 40% of periods"]


def test_seeded_anomaly_is_not_raised_again():
    tr = StatusTracker(raise_after=2, clear_after=2)
    tr.seed(T, {"rule": "oom", "severity": "critical", "reason": "OOM killed",
                "since": 5.0})
    assert feed(tr, [[hard()], [], []]) == [[], [], ["ended"]]


def test_a_held_signal_is_not_missed_and_adopted_ends_at_a_finding():
    tr = StatusTracker(raise_after=2, clear_after=2)
    tr.seed(T, {"rule": "cpu_throttled", "severity": "warning", "reason": "x"})
    key = (T, "cpu_throttled")
    assert tr.adopted_keys() == [key]
    for i in range(5):
        assert tr.update([], float(i), hold={key}) == []
    assert tr.active_keys() == {key}
    tr.update([soft()], 5.0)
    assert tr.adopted_keys() == []
    assert [e.kind for e in tr.update([], 6.0) + tr.update([], 7.0)] == ["ended"]


@given(st.integers(2, 6), st.integers(2, 6), st.integers(4, 60),
       st.booleans())
def test_alternating_input_never_flaps(n, m, length, is_hard):
    """A signal present every other evaluation: a soft one is never raised, a
    hard one is raised once and never ends while it keeps coming back."""
    tr = StatusTracker(raise_after=n, clear_after=m)
    finding = hard() if is_hard else soft()
    kinds = [k for ks in feed(tr, [[finding] if i % 2 == 0 else []
                                   for i in range(length)]) for k in ks]
    assert kinds == (["started"] if is_hard else [])


@given(st.lists(st.booleans(), max_size=80), st.integers(1, 5), st.integers(1, 5))
def test_any_input_changes_state_only_with_hysteresis(present, n, m):
    """Between a start and its end there are at least M evaluations, and a soft
    signal starts only after N consecutive findings."""
    tr = StatusTracker(raise_after=n, clear_after=m)
    started_at, streak = None, 0
    for i, p in enumerate(present):
        streak = streak + 1 if p else 0
        kinds = [e.kind for e in tr.update([soft()] if p else [], float(i))]
        if "started" in kinds:
            assert streak >= n and started_at is None
            started_at = i
        if "ended" in kinds:
            assert started_at is not None and i - started_at >= m
            started_at = None


def test_roll_up_to_hosts_and_edges_stay_separate():
    G = nx.DiGraph()
    G.add_node("host:h", type="host", name="h", parent=None)
    for c in ("a", "b"):
        G.add_node(f"container:h:{c}", type="container", name=c, parent="host:h")
    G.add_edge("container:h:a", "container:h:b")
    e = edge_target("container:h:a", "container:h:b")
    own = {
        "container:h:b": {"status": "critical", "reasons": ["OOM killed"],
                          "anomalies": [{"rule": "oom"}]},
        e: {"status": "warning", "reasons": ["connection refused"],
            "anomalies": [{"rule": "connect_failed"}]},
    }
    out = roll_up(G, own)
    assert out["host:h"]["status"] == "critical"
    assert out["host:h"]["own_status"] == "ok"
    assert out["host:h"]["reasons"] == ["b: OOM killed"]
    assert out[e]["name"] == "a -> b" and out[e]["type"] == "edge"
    assert "container:h:a" not in out


def test_parameters_must_be_positive():
    with pytest.raises(ValueError):
        StatusTracker(raise_after=0)
