"""``RedisReporter.set_next_history``: the history a replay asks for is the
history written (real Redis), whatever the reporter's own steps would do."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.reporter import HistoryPolicy, HostReport, RedisReporter
from collector.schema import FlowKey, HostRecord, Keys, container_node_id

KEYS = Keys("portolan")
HOST = "nh-h1"
T0 = 1_750_000_000.0
FLOW = FlowKey(container_node_id(HOST, "b" * 64), "out", "10.9.0.4", 80)


def written(client) -> dict[str, int]:
    return {tier: client.zcard(KEYS.history(HOST, tier))
            for tier in ("fine", "coarse", "totals")}


@pytest.mark.parametrize(("tiers", "expected"), [
    ((), {"fine": 0, "coarse": 0, "totals": 0}),
    (("fine",), {"fine": 2, "coarse": 0, "totals": 0}),
    (("fine", "coarse"), {"fine": 2, "coarse": 2, "totals": 0}),
    (("fine", "coarse", "totals"), {"fine": 2, "coarse": 2, "totals": 2}),
])
def test_the_next_reports_write_the_history_asked_for(redis_client, tiers,
                                                      expected):
    # Steps far longer than the reports' spacing: left to itself the
    # reporter would snapshot only its first report, in every tier.
    reporter = RedisReporter(redis_client, KEYS, history=HistoryPolicy(
        step=1000.0, coarse_step=1000.0, keyframe=1000.0))
    for i in range(2):
        reporter.set_next_history(tiers)
        assert reporter.report(HostReport(
            host=HostRecord(id=HOST), flows=Counter({(FLOW, "connections"): 1})),
            now=T0 + i)
    assert written(redis_client) == expected
