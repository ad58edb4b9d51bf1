"""The capture recorder's records add up to what the collector counted: a
replay (the first record's base, then every record's flows, written into the
host's live flow fields) reaches the live hash the capture read, field for
field, whatever happened to the host's containers between reads."""

from collections import Counter

import pytest

from collector.capture.format import HISTORY_TIERS, Report
from collector.capture.recorder import (
    HostHistoryRead,
    HostKeysRead,
    HostReader,
    history_reports,
)
from collector.flow_fields import host_flow_fields
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    Keys,
    container_node_id,
    encode_snapshot,
    make_flow_field,
    parse_flow_field,
)

H = "capture-host"
OTHER = "118ac8e2d07a" + "5f" * 26  # a Docker id: its fields carry 118ac8e2d07a
OURS = "ab" * 32
T0 = 1_750_000_000.0


def flow(cid: str, port: int = 9000) -> FlowKey:
    return FlowKey(container_node_id(H, cid), "out", "172.17.0.4", port)


def live_field(cids, key: FlowKey, counter: str = "connections") -> bytes:
    """The field the collector writes for ``key`` while ``cids`` run."""
    return host_flow_fields(H, cids).name(key, counter).encode()


def keys_read(cids, flows: dict[bytes, int], snapshots=None,
              ids=None) -> HostKeysRead:
    """A read of the host's keys as Redis answers it; ``snapshots``: tier ->
    [(time, canonical counts)] written since the read before; ``ids``: the
    host's ids hash (short container id -> whole id)."""
    snapshots = snapshots or {}
    records = [ContainerRecord(id=c, name=f"c-{c[:4]}", state="running")
               for c in cids]
    containers = {r.id.encode(): r.to_json().encode() for r in records}
    tiers = [[(encode_snapshot({"ts": t, "host": {"id": H}, "counts": counts,
                                "containers": [r.to_dict() for r in records]}), t)
              for t, counts in snapshots.get(tier, [])]
             for tier in HISTORY_TIERS]
    return HostKeysRead(HostRecord(id=H).to_json().encode(), containers, {},
                        {f: str(v).encode() for f, v in flows.items()}, {},
                        {k.encode(): v.encode() for k, v in (ids or {}).items()},
                        tiers)


def replayed(records: list[Report]) -> Counter:
    """The live flow fields a replay of ``records`` writes, with their totals
    (as the replayer's reporter names them for each record's containers)."""
    out: Counter = Counter()
    for r in records:
        fields = host_flow_fields(H, [c.id for c in r.containers])
        for name, n in [*r.base.items(), *r.flows.items()]:
            out[fields.name(*parse_flow_field(name)).encode()] += n
    return out


@pytest.mark.parametrize("ids", [{}, {OTHER[:12]: OTHER}],
                         ids=["no ids entry", "ids entry"])
def test_traffic_before_the_capture_replays_once_after_its_container_is_gone(ids):
    # The other container talked before the capture began, then was removed.
    # Without an ids entry for it (flows written by a collector before the
    # ids hash, or the ids hash lost) its short id no longer resolves: its
    # field's canonical name changes, its counter does not.
    reader = HostReader(None, Keys())
    field = live_field([OTHER, OURS], flow(OTHER))
    first = reader.records(H, T0, keys_read([OTHER, OURS], {field: 5}, ids=ids))
    assert first[0].base == {make_flow_field(flow(OTHER), "connections"): 5}
    later = reader.records(H, T0 + 1, keys_read([OURS], {field: 5}, ids=ids))
    assert [r.flows for r in later] == [{}]
    assert replayed(first + later) == {field: 5}


def test_every_count_is_replayed_once_through_resets_and_late_reads():
    reader = HostReader(None, Keys())
    ours = live_field([OURS], flow(OURS, 80))
    records = reader.records(H, T0, keys_read([OURS], {ours: 7}))
    # A late read: two history steps written meanwhile, the first begun
    # before the capture (its 4 counts hold 3 of the base).
    counted = make_flow_field(flow(OURS, 80), "connections")
    snaps = {"fine": [(T0 + 1, {counted: 4}), (T0 + 2, {counted: 2})]}
    records += reader.records(H, T0 + 2.5, keys_read([OURS], {ours: 10}, snaps))
    assert replayed(records) == {ours: 10}
    assert [r.history for r in records[1:]] == [("fine",), ("fine",), ()]
    # Its hash expired and counts anew from 0.
    records += reader.records(H, T0 + 9, keys_read([OURS], {ours: 2}))
    assert replayed(records) == {ours: 12}


def history_read(cids_now, flows: dict[bytes, int], snapshots, ids=None,
                 tier="fine") -> HostHistoryRead:
    """A past window's read of the host's keys: ``snapshots`` [(time,
    containers then, canonical counts)] of ``tier`` from the window's start
    on, the containers, flows and ids hash now."""
    rows = [(encode_snapshot({
        "ts": t, "host": {"id": H}, "counts": counts,
        "containers": [ContainerRecord(id=c, name=f"c-{c[:4]}",
                                       state="running").to_dict() for c in cids]}),
             t) for t, cids, counts in snapshots]
    return HostHistoryRead(
        tier, rows, set(), [c.encode() for c in cids_now],
        {f: str(v).encode() for f, v in flows.items()},
        {k.encode(): v.encode() for k, v in (ids or {}).items()})


@pytest.mark.parametrize("ids", [{}, {OTHER[:12]: OTHER}],
                         ids=["no ids entry", "ids entry"])
def test_a_past_window_replays_once_after_its_container_is_gone(ids):
    # The other container counted 5 before the window and 3 in it, then was
    # removed: today its live field's short id may no longer resolve (no ids
    # entry), while the window's snapshots name it by its whole id. The
    # counts in (and after) the window come off today's totals per live
    # field, whatever name it has today.
    field = live_field([OTHER, OURS], flow(OTHER))
    counted = make_flow_field(flow(OTHER), "connections")
    read = history_read([OURS], {field: 8}, [
        (T0 + 10, [OTHER, OURS], {counted: 2}),
        (T0 + 20, [OTHER, OURS], {counted: 1}),
        (T0 + 30, [OURS], {})], ids=ids)
    records = history_reports(H, T0 + 25, read)
    assert [r.ts for r in records] == [T0 + 10, T0 + 20]
    assert records[0].base == {counted: 5}
    assert replayed(records) == {field: 8}


def test_a_past_window_leaves_out_what_was_counted_after_it():
    ours = live_field([OURS], flow(OURS, 80))
    counted = make_flow_field(flow(OURS, 80), "connections")
    read = history_read([OURS], {ours: 20}, [
        (T0 + 10, [OURS], {counted: 4}), (T0 + 20, [OURS], {counted: 6})])
    records = history_reports(H, T0 + 15, read)
    assert records[0].base == {counted: 10}
    assert replayed(records) == {ours: 14}
