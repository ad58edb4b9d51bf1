"""A past window's capture (``manage.py capture --since/--until``) from the
history a real reporter wrote into a real Redis: its first record's base is
what the host had counted before the window, and a replay of the window
reaches the totals the host had at its end."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.capture.recorder import history_records
from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    make_flow_field,
)

KEYS = Keys("portolan")
T0 = 1_750_000_000.0
HOST = "pw-h1"
FLOW = FlowKey(container_node_id(HOST, "a" * 64), "out", "10.9.0.3", 80)
FIELD = make_flow_field(FLOW, "connections")


def write_seconds(client, seconds: int, history: HistoryPolicy) -> None:
    """One connection a second for ``seconds`` seconds, through the reporter."""
    reporter = RedisReporter(client, KEYS, flow_ttl=3600, history=history)
    container = ContainerRecord(id="a" * 64, name="pw-a", state="running")
    for i in range(seconds):
        assert reporter.report(HostReport(
            host=HostRecord(id=HOST), containers=[container],
            flows=Counter({(FLOW, "connections"): 1})), now=T0 + i)


def test_the_base_leaves_out_what_was_counted_after_the_last_snapshot(
        redis_client):
    # Fine snapshots at T0 (1 count), T0+5 (5), T0+10 (5); T0+11 and T0+12
    # are counted in the live hash, in no snapshot yet.
    write_seconds(redis_client, 13, HistoryPolicy(step=5.0, coarse_step=60.0))
    records = history_records(redis_client, KEYS, T0 + 5, T0 + 10)
    assert [r.ts for r in records] == [T0 + 5, T0 + 10]
    assert records[0].base == {FIELD: 1}  # the count at T0 only
    assert records[0].base[FIELD] + sum(r.flows[FIELD] for r in records) == 11


@pytest.mark.parametrize(("fine", "since", "first", "tier"), [
    (3600.0, 52, 55, "fine"),  # keyframe at T0+40, coarse T0+40, fine after
    (30.0, 30, 40, "coarse"),  # the fine tier no longer reaches back
])
def test_the_base_is_the_totals_before_the_window_from_the_keyframe(
        redis_client, fine, since, first, tier):
    write_seconds(redis_client, 103, HistoryPolicy(
        step=5.0, fine=fine, coarse_step=20.0, keyframe=40.0))
    records = history_records(redis_client, KEYS, T0 + since, T0 + 80)
    assert records[0].ts == T0 + first and records[-1].ts == T0 + 80
    assert records[0].history[-1] == tier
    step = 5 if tier == "fine" else 20
    # The totals at the snapshot before the first (one count at T0 and one
    # a second since), then the window's counts up to T0+80.
    assert records[0].base == {FIELD: first - step + 1}
    assert records[0].base[FIELD] + sum(r.flows[FIELD] for r in records) == 81
