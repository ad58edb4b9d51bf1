"""The failure window's one-counter sum (``Memory.window_sum``) against the
whole window summed (``Memory.window_sums``), and the window's steps against
every step's changes, over random edge histories."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.anomalies.config import Config
from webapp.anomalies.memory import (
    EDGE_COUNTERS,
    Memory,
    _remember_window,
    first_deltas,
)

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
    every = []  # (time, changes) of every step remembered
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
        # Against every step kept (zeros too): the same sums, and the same
        # steps that changed something, newest first.
        current = mem.edge_deltas(TARGET, data) or first_deltas(data)
        kept = [d for ts, d in reversed(every) if ts > since]
        assert whole == {k: current[k] + sum(d[k] for d in kept)
                         for k in EDGE_COUNTERS}
        steps = mem.recent_edge_deltas(TARGET, data, since)
        assert steps[0] == current
        assert [d for d in steps[1:] if any(d.values())] == [
            d for d in kept if any(d.values())]
        # then the step is remembered, as ``remember`` does for each edge
        every.append((now, _remember_window(mem, config, now, TARGET, data)))
        assert mem.counters[TARGET] == {k: data[k] for k in EDGE_COUNTERS}
