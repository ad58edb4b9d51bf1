"""Garbage collection for the graph builder and the analyzer: young objects
after each round (a builder round, an analysis step), the whole heap now and
then, never in the middle of a build.

Both hold millions of long-lived objects (the fleet's flows, three levels'
nodes and links; the analyzer's windows and baselines), and both build large
graphs every round. Python's automatic collector runs a full
collection whenever the objects that survived young collections grow by a
quarter of the heap, which a full build of 10,000 containers does: one or
two collections a build, each scanning the whole heap, 0.7-0.9 s of a ~1.8 s
build (`bench/builder_round.py`); 15-20 % of an analysis step at that
scale (`bench/analyzer_step.py`). What a build leaves as garbage that only a
collector can free (networkx graphs: their edge views point back at them) is
young: collecting the young generations after each round frees it (~0.15 s
after a full build, ~0.11 million objects; milliseconds after a typical
round), and a full collection every ``full_every`` seconds frees what died
old in cycles.

A round that built no graph leaves little that only a collector can free:
its garbage dies by reference counting. The graph builder's rounds when
every container's metrics move replace 10,000 records and their metrics
each second, and a young collection after each round scanned every one of
them (~45 ms of a ~0.5 s round). With ``young_every``, young collections
come at most that often, or after a round that built a graph (``built``);
the records replaced meanwhile are gone by then and are never scanned.

Only ``manage.py builder`` and ``manage.py analyze`` (and the benchmarks)
take this over; a test that runs either in its own process keeps Python's
collector as it is.
"""

from __future__ import annotations

import gc
import time

__all__ = ["RoundCollector"]


class RoundCollector:
    """Collects at the end of each round instead of during it."""

    def __init__(self, full_every: float = 600.0, clock=time.monotonic,
                 young_every: float = 0.0):
        self.full_every = full_every
        self.young_every = young_every
        self.clock = clock
        self.last_full = clock()
        self.last_young = self.last_full
        self.active = False

    def take_over(self) -> None:
        """Turn Python's automatic collection off for this process."""
        gc.disable()
        self.active = True
        self.last_full = self.last_young = self.clock()

    def after_round(self, built: bool = True) -> int:
        """Collect what the round left (``built``: it built a graph, whose
        cycles are freed now; else young objects only every ``young_every``
        seconds); the whole heap when it is time. The number of unreachable
        objects found (0 when not active or not collected)."""
        if not self.active:
            return 0
        now = self.clock()
        if now - self.last_full >= self.full_every:
            self.last_full = self.last_young = now
            return gc.collect()
        if not built and now - self.last_young < self.young_every:
            return 0
        self.last_young = now
        return gc.collect(1)

    def release(self) -> None:
        """Give collection back to Python (a builder that stops)."""
        if self.active:
            self.active = False
            gc.enable()
