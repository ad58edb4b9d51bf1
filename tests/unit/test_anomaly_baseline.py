"""Adaptive baselines: EWMA mean and variance, warm-up, outliers."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.anomalies.baseline import Baseline, Baselines, is_spike


def test_mean_follows_a_steady_series_and_variance_stays_small():
    b = Baselines(halflife=10)
    for t in range(100):
        b.update("e", "rate", 10.0 + (t % 2), float(t))
    series = b.get("e", "rate")
    assert 10.0 < series.mean < 11.0
    assert 0.2 < series.std < 0.8


def test_halflife_is_in_seconds_not_samples():
    # Past warm-up (one sample), where the time-based half-life applies.
    fast = Baselines(halflife=10, warmup_samples=1)
    slow = Baselines(halflife=10, warmup_samples=1)
    fast.update("e", "r", 0.0, 0.0)
    slow.update("e", "r", 0.0, 0.0)
    for i in range(1, 11):  # ten samples over ten seconds ...
        fast.update("e", "r", 100.0, float(i))
    slow.update("e", "r", 100.0, 10.0)  # ... or one sample after ten seconds
    assert fast.get("e", "r").mean == pytest.approx(50.0, abs=0.5)
    assert slow.get("e", "r").mean == pytest.approx(50.0, abs=0.5)


@pytest.mark.parametrize(("samples", "age", "warm"),
                         [(3, 100, False), (10, 5, False), (10, 100, True)])
def test_warm_up_needs_samples_and_age(samples, age, warm):
    b = Baselines(warmup_seconds=50, warmup_samples=10)
    for i in range(samples):
        b.update("c", "cpu", 1.0, i * age / samples)
    assert (b.warm("c", "cpu", float(age)) is not None) is warm
    assert b.warm("other", "cpu", 1e9) is None


def test_outliers_are_not_learned_until_they_last():
    b = Baselines(halflife=10, relearn_after=30)
    for t in range(20):
        b.update("e", "lat", 1000.0, float(t))
    for t in range(20, 45):
        b.update("e", "lat", 50_000.0, float(t), outlier=True)
    assert b.get("e", "lat").mean == pytest.approx(1000.0)
    for t in range(45, 80):
        b.update("e", "lat", 50_000.0, float(t), outlier=True)
    assert b.get("e", "lat").mean > 25_000


def test_forget_drops_every_series_of_a_target():
    b = Baselines()
    b.update("a", "x", 1, 0)
    b.update("a", "y", 1, 0)
    b.update("b", "x", 1, 0)
    b.forget(["a"])
    assert list(b.series) == [("b", "x")]


@pytest.mark.parametrize(
    ("value", "spike"),
    [(10.0, False), (29.0, False), (31.0, True), (1000.0, True)],
)
def test_is_spike_needs_factor_zscore_and_floor(value, spike):
    assert is_spike(Baseline(mean=10.0, var=4.0), value, 3.0, 4.0, 5.0) is spike


def test_a_small_series_needs_the_absolute_floor():
    assert not is_spike(Baseline(mean=0.01, var=0.0), 0.2, 3.0, 4.0, 0.5)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=60),
       st.floats(0.5, 600))
def test_mean_stays_within_the_samples_and_variance_non_negative(values, halflife):
    b = Baselines(halflife=halflife)
    for t, v in enumerate(values):
        series = b.update("t", "m", v, float(t))
    assert min(values) - 1e-6 <= series.mean <= max(values) + 1e-6
    assert series.var >= -1e-6
    assert series.count == len(values)


def test_a_partial_first_sample_does_not_become_the_usual_value():
    b = Baselines(halflife=120, warmup_seconds=5, warmup_samples=5,
                  relearn_after=600)
    b.update("edge", "connections_per_s", 2.0, now=0.0)  # the first, partial interval
    for t in range(1, 10):
        b.update("edge", "connections_per_s", 20.0, now=float(t))
    warm = b.warm("edge", "connections_per_s", now=9.0)
    # It weighs as one sample in five, not as the start of a 120 s half-life.
    assert warm is not None and warm.mean > 16
