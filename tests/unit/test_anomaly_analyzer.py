"""The analyzer's evaluation step (no Redis): rules, hysteresis and learning."""

from unittest.mock import MagicMock

from test_anomaly_rules import cid, graph, steady_edge

from webapp.anomalies.analyzer import Analyzer
from webapp.anomalies.config import Config
from webapp.anomalies.keys import edge_target

EDGE = edge_target(cid("api"), cid("db"))


def analyzer(**overrides):
    conf = Config(**{"warmup_seconds": 5, "warmup_samples": 5,
                     "baseline_halflife": 30, **overrides})
    return Analyzer(MagicMock(), config=conf)


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
