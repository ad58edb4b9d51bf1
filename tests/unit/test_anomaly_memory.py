"""The failure window's one-counter sum (``Memory.window_sum``) against the
whole window summed (``Memory.window_sums``), over random edge histories."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.anomalies.config import Config
from webapp.anomalies.memory import EDGE_COUNTERS, Memory, _remember_window

TARGET = "container:h:a>container:h:b"

# One step: how much each counter grew (mostly nothing), the failure rate
# that says whether a first sight's failures are current, and seconds since
# the step before.
steps = st.lists(st.tuples(
    st.dictionaries(st.sampled_from(EDGE_COUNTERS), st.integers(0, 5), max_size=3),
    st.booleans(), st.sampled_from([0.5, 1.0, 7.0, 40.0])), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from([5.0, 30.0, 60.0]))
def test_one_counter_sum_equals_the_window_summed(history, window):
    config = Config(failure_window=window)
    mem = Memory.new(config)
    totals = dict.fromkeys(EDGE_COUNTERS, 0)
    now = 1000.0
    for grown, failing, gap in history:
        now += gap
        for name, value in grown.items():
            totals[name] += value
        data = {**totals, "failed_per_s": 1.0 if failing else 0.0}
        since = now - window
        whole = mem.window_sums(TARGET, data, since)
        for name in EDGE_COUNTERS:
            assert mem.window_sum(TARGET, data, since, name) == whole[name], name
        # then the step is remembered, as ``remember`` does for each edge
        _remember_window(mem, config, now, TARGET, data)
        mem.counters[TARGET] = {k: data.get(k, 0) or 0 for k in EDGE_COUNTERS}
