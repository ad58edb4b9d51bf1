"""Garbage collection between rounds (webapp/round_collector.py)."""

from __future__ import annotations

import gc
import weakref

from webapp.round_collector import RoundCollector


class Node:
    """An object that can sit in a reference cycle and be watched."""


def cycle() -> weakref.ref:
    """A cycle nothing else holds; a weak reference to one of its objects."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_rounds_collect_young_cycles_and_the_heap_now_and_then():
    now = [0.0]
    collector = RoundCollector(full_every=60.0, clock=lambda: now[0])
    assert collector.after_round() == 0, "not taken over: Python's collector runs"
    gc.collect()
    collector.take_over()
    try:
        assert not gc.isenabled(), "no automatic collection in the middle of a build"
        young = cycle()
        assert young() is not None
        assert collector.after_round() >= 2
        assert young() is None, "a round's cyclic garbage is gone after it"
        # Garbage that died old (it survived collections before its cycle was
        # cut loose) waits for the full collection.
        holder = [Node(), Node()]
        holder[0].other, holder[1].other = holder[1], holder[0]
        old = weakref.ref(holder[0])
        collector.after_round()
        collector.after_round()  # now in the oldest generation
        holder.clear()
        now[0] = 59.0
        collector.after_round()
        assert old() is not None, "young collections leave the old generation"
        now[0] = 60.0
        collector.after_round()
        assert old() is None, "the full collection after full_every frees it"
    finally:
        collector.release()
    assert gc.isenabled(), "released: Python collects again"
    assert collector.after_round() == 0


def test_young_collections_wait_for_young_every_unless_a_round_built():
    now = [0.0]
    collector = RoundCollector(full_every=600.0, clock=lambda: now[0],
                               young_every=5.0)
    gc.collect()
    collector.take_over()
    try:
        young = cycle()
        now[0] = 1.0
        assert collector.after_round(built=False) == 0
        assert young() is not None, "not yet: a round that built nothing waits"
        now[0] = 5.0
        assert collector.after_round(built=False) >= 2
        assert young() is None, "young_every after the last one: collected"
        built = cycle()
        now[0] = 6.0
        assert collector.after_round(built=True) >= 2
        assert built() is None, "a round that built a graph frees its cycles now"
        again = cycle()
        now[0] = 7.0
        assert collector.after_round(built=False) == 0
        assert again() is not None, "the spacing counts from the last collection"
    finally:
        collector.release()
