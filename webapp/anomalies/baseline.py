"""Adaptive baselines: an exponentially weighted mean and variance per series.

A series is keyed by ``(target, metric)``. The weight of the past decays with a
half-life in seconds rather than per sample, so an analyzer that runs slower or
faster still forgets at the same pace. A series is *warm*, and may be used to
flag anything, only once it has both ``warmup_samples`` samples and
``warmup_seconds`` of age: a new container or edge is learned, never judged.

Outliers are not learned (one slow connect would otherwise widen the variance
so much that the next ones look normal), unless they last ``relearn_after``
seconds: then they are the new normal, and the baseline follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Baseline", "Baselines", "is_spike"]


@dataclass(slots=True)
class Baseline:
    """One series' running mean and variance."""

    mean: float
    var: float = 0.0
    count: int = 1
    first: float = 0.0  # time of the first sample
    last: float = 0.0  # time of the latest sample
    outlying_since: float | None = None  # first of the current run of outliers

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))


def is_spike(
    b: Baseline, value: float, factor: float, zscore: float, floor: float
) -> bool:
    """Whether ``value`` rose suddenly above baseline ``b``.

    It must be ``factor`` times the mean, ``zscore`` deviations above it and at
    least ``floor`` above it in absolute terms (a steady series has a tiny
    deviation, so the last two keep noise on small numbers quiet).

    >>> is_spike(Baseline(mean=10.0, var=1.0), 50.0, 3.0, 4.0, 5.0)
    True
    >>> is_spike(Baseline(mean=10.0, var=1.0), 14.0, 3.0, 4.0, 5.0)
    False
    """
    rise = value - b.mean
    spread = max(b.std, 0.1 * abs(b.mean), 1e-9)
    return rise >= floor and value >= factor * b.mean and rise / spread >= zscore


class Baselines:
    """EWMA baselines for many series, with warm-up."""

    def __init__(self, halflife: float = 120.0, warmup_seconds: float = 120.0,
                 warmup_samples: int = 10, relearn_after: float = 600.0):
        self.halflife = halflife
        self.relearn_after = relearn_after
        self.warmup_seconds = warmup_seconds
        self.warmup_samples = warmup_samples
        self.series: dict[tuple[str, str], Baseline] = {}

    def update(self, target: str, metric: str, value: float, now: float,
               outlier: bool = False) -> Baseline:
        """Add one sample and return the series' new baseline.

        An ``outlier`` is skipped, unless outliers have lasted ``relearn_after``.
        """
        key = (target, metric)
        b = self.series.get(key)
        if b is None:
            b = self.series[key] = Baseline(mean=float(value), first=now, last=now)
            return b
        if outlier:
            if b.outlying_since is None:
                b.outlying_since = now
            if now - b.outlying_since < self.relearn_after:
                return b
        else:
            b.outlying_since = None
        # Time-based weight: the share of the new sample grows with the gap.
        dt = max(now - b.last, 1e-3)
        alpha = 1.0 - math.exp(-dt * math.log(2) / self.halflife)
        if b.count < self.warmup_samples:
            # During warm-up, the plain mean of the samples so far: the first
            # (often partial) interval must not stand as "usual" for minutes.
            alpha = max(alpha, 1.0 / (b.count + 1))
        diff = value - b.mean
        incr = alpha * diff
        b.mean += incr
        b.var = (1.0 - alpha) * (b.var + diff * incr)
        b.count += 1
        b.last = now
        return b

    def get(self, target: str, metric: str) -> Baseline | None:
        return self.series.get((target, metric))

    def warm(self, target: str, metric: str, now: float) -> Baseline | None:
        """The series' baseline if it is past warm-up, else None."""
        b = self.series.get((target, metric))
        if b is None or b.count < self.warmup_samples:
            return None
        if now - b.first < self.warmup_seconds:
            return None
        return b

    def forget(self, targets) -> None:
        """Drop every series of the given targets."""
        gone = set(targets)
        for key in [k for k in self.series if k[0] in gone]:
            del self.series[key]
