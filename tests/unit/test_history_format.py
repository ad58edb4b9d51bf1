"""History format 2 (collector.history_format): what a snapshot stored against
its keyframe decodes to is exactly what was written, old blobs still read."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collector import history_format
from collector.history_format import (
    decode_history,
    decode_history_counts,
    decode_keyframe,
    encode_history,
    encode_keyframe,
    keyframe_of,
    step_rates,
)
from collector.schema import SchemaError, encode_snapshot

NODE = "container:h:" + "a" * 64
FLOWS = [f"{NODE}\tout\t10.0.0.{i}\t80\ttcp" for i in range(6)]
COUNTERS = ["connections", "bytes_sent", "bytes_received", "failed"]
RECORDS = {"host": {"id": "h", "hostname": "h"},
           "containers": [{"id": "a" * 64, "name": "web"},
                          {"id": "b" * 64, "name": "db", "metrics": {"cpu": 1.5}}],
           "addrs": {"10.0.0.9": NODE}}

fields = st.sampled_from([f"{f}\t{c}" for f in FLOWS for c in COUNTERS])


def frame_at(ts=100.0, totals=None):
    return encode_keyframe({"ts": ts, "totals": totals or {
        f"{FLOWS[0]}\tconnections": 7, f"{FLOWS[1]}\tbytes_sent": 900},
        **RECORDS})


@given(counts=st.dictionaries(fields, st.integers(-5, 10**12).filter(bool)),
       rates=st.dictionaries(fields, st.floats(0, 1e9, allow_nan=False)),
       cpu=st.floats(0, 100, allow_nan=False))
def test_a_snapshot_decodes_to_exactly_what_was_written(counts, rates, cpu):
    """A tier's first snapshot (no ``since``): its rates are stored too."""
    blob, frame = frame_at()
    assert decode_keyframe(blob) == frame
    snap = {"ts": 105.0, "since": None, **RECORDS, "counts": counts,
            "rates": rates}
    # One container's metrics moved since the keyframe; the other did not.
    snap["containers"] = [RECORDS["containers"][0],
                          {"id": "b" * 64, "name": "db", "metrics": {"cpu": cpu}}]
    stored = encode_history(snap, frame)
    assert keyframe_of(stored) == 100.0
    assert decode_history(stored, frame) == snap
    assert decode_history_counts(stored, frame) == counts
    alone = encode_history(snap, None)  # no keyframe: it stands alone
    assert keyframe_of(alone) is None
    assert decode_history(alone) == snap


@settings(deadline=None)  # a loaded CI machine is no reason to fail
@given(counts=st.dictionaries(fields, st.integers(1, 10**12)),
       rates=st.dictionaries(fields, st.floats(0, 1e9, allow_nan=False)))
def test_a_snapshot_with_a_step_stores_no_rates_and_reads_them_over_it(
        counts, rates):
    """Every later snapshot: its rates are its counts over its step, and
    the last report's are not stored."""
    _, frame = frame_at()
    snap = {"ts": 105.0, "since": 100.0, **RECORDS, "counts": counts,
            "rates": rates}
    stored = decode_history(encode_history(snap, frame), frame)
    assert stored == {**snap, "rates": step_rates(snap)}
    assert stored["rates"] == {
        f: round(v / 5.0, 3) for f, v in counts.items()
        if f.rpartition("\t")[2] != "connect_latency_us_sum"}
    if rates:
        first = encode_history({**snap, "since": None}, frame)
        assert len(encode_history(snap, frame)) < len(first)


def test_stored_rates_of_an_older_snapshot_still_read():
    """A snapshot an older collector wrote with its rates beside its step."""
    _, frame = frame_at()
    rate = {f"{FLOWS[0]}\tconnections": 0.5}
    snap = {"ts": 105.0, "since": 100.0, **RECORDS,
            "counts": {f"{FLOWS[0]}\tconnections": 20}, "rates": rate}
    old = encode_history({**snap, "since": None}, frame)
    # The same body with its ``since`` put back, as older collectors wrote it.
    frame_ts, body = history_format._unpack(old)
    body["since"] = 100.0
    old = history_format._pack(frame_ts, body)
    assert decode_history(old, frame)["rates"] == rate
    assert decode_history(encode_history(snap, frame), frame)["rates"] == {
        f"{FLOWS[0]}\tconnections": 4.0}


def test_unchanged_records_and_known_flows_are_not_stored_again():
    _, frame = frame_at(totals={f"{f}\t{c}": 1 for f in FLOWS for c in COUNTERS})
    snap = {"ts": 105.0, "since": 100.0, **RECORDS,
            "counts": {f"{f}\tconnections": 3 for f in FLOWS}, "rates": {}}
    against = encode_history(snap, frame)
    alone = encode_history(snap, None)
    assert len(against) < len(alone) / 2, (len(against), len(alone))
    assert NODE.encode() not in against  # (compressed, but no names at all)


def test_format_1_blobs_still_read():
    snap = {"ts": 5.0, "since": 0.0, **RECORDS, "counts": {
        f"{FLOWS[0]}\tconnections": 2}, "rates": {}}
    old = encode_snapshot(snap)
    assert keyframe_of(old) is None
    assert decode_history(old) == snap
    assert decode_history_counts(old) == snap["counts"]
    old_frame = encode_snapshot({"ts": 1.0, "totals": {"x\tconnections": 4}})
    assert decode_keyframe(old_frame) == {"ts": 1.0,
                                          "totals": {"x\tconnections": 4}}


def test_a_snapshot_without_its_keyframe_is_a_clear_error():
    _, frame = frame_at()
    stored = encode_history({"ts": 105.0, "since": 100.0, **RECORDS,
                             "counts": {}, "rates": {}}, frame)
    with pytest.raises(SchemaError, match="keyframe of 100"):
        decode_history(stored, None)
    _, other = frame_at(ts=700.0)
    with pytest.raises(SchemaError, match="keyframe of 100"):
        decode_history_counts(stored, other)
    with pytest.raises(SchemaError, match="malformed"):
        decode_history(stored[:12] + b"garbage", frame)


# ------------------------------------------------------------ container metrics

metric_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 10**6).map(lambda n: round(n / 10**4, 4)),
    st.floats(allow_nan=False), st.sampled_from(["healthy", "#"]))
metric_names = st.sampled_from(["cpu_cores", "memory_working_set_bytes",
                                "net_rx_bytes", "health", "oom_killed", "i",
                                "custom"])
records_strategy = st.lists(st.fixed_dictionaries(
    {"id": st.sampled_from(["a" * 64, "b" * 64, "c" * 64]),
     "state": st.sampled_from(["running", "exited"])},
    optional={"metrics": st.dictionaries(metric_names, metric_values)}),
    max_size=4)


@example(frame_records=[{"id": "a" * 64, "state": "running",
                         "metrics": {"pids": 3, "cpu_cores": 0.1}}],
         records=[{"id": "a" * 64, "state": "running",
                   "metrics": {}}])  # its numbers went away
@example(frame_records=[{"id": "a" * 64, "metrics": {"cpu_cores": 0.5}}],
         records=[{"id": "a" * 64, "metrics": {"cpu_cores": "#"}}])
@settings(deadline=None)  # a loaded CI machine is no reason to fail
@given(frame_records=records_strategy, records=records_strategy)
def test_records_with_metrics_decode_to_exactly_what_was_written(
        frame_records, records):
    """Whatever the metrics (numbers that moved since the keyframe to
    columns), and whatever the keyframe held, a snapshot reads back as written."""
    _, frame = encode_keyframe({"ts": 100.0, "totals": {}, "host": {"id": "h"},
                                "containers": frame_records, "addrs": {}})
    snap = {"ts": 105.0, "since": None, "host": {"id": "h"},
            "containers": records, "addrs": {}, "counts": {}, "rates": {}}
    assert decode_history(encode_history(snap, frame), frame) == snap
    assert decode_history(encode_history(snap, None)) == snap


def moving_records(step: int) -> list[dict]:
    """20 containers whose cgroup metrics moved since the last report."""
    return [{"id": f"{i:064x}", "name": f"app-{i}", "state": "running",
             "ips": [f"10.0.0.{i}"], "metrics": {
                 "cgroup_version": 2, "cpu_cores": round(0.0137 * (i + step), 4),
                 "memory_working_set_bytes": (100 << 20) + 4096 * (i * step % 97),
                 "memory_usage_bytes": (120 << 20) + 4096 * step,
                 "net_rx_bytes": 10**9 + 12_345 * step * (i + 1),
                 "net_rx_bytes_per_s": round(12_345 / 3 * (i + 1), 3),
                 "pids": 3 + i % 5, "pids_limit": None, "health": None,
                 "oom_killed": False}} for i in range(20)]


def test_moving_metrics_are_stored_as_columns_not_whole_records(monkeypatch):
    _, frame = encode_keyframe({"ts": 100.0, "totals": {}, "host": {"id": "h"},
                                "containers": moving_records(0), "addrs": {}})
    snap = {"ts": 105.0, "since": 100.0, "host": {"id": "h"},
            "containers": moving_records(5), "addrs": {}, "counts": {},
            "rates": {}}
    blob = encode_history(snap, frame)
    assert blob[0] == history_format.FORMAT_4
    assert decode_history(blob, frame) == snap
    # The same snapshot with every record kept whole, as format 3 stored it.
    monkeypatch.setattr(history_format, "_shape", history_format._compact)
    whole = encode_history(snap, frame)
    assert len(blob) < 0.5 * len(whole), (len(blob), len(whole))


def test_a_format_3_snapshot_of_whole_records_still_reads():
    """Written by the collector before format 4: its unchanged records refer
    to the keyframe's whole records, metrics and all."""
    records = moving_records(1)
    _, frame = encode_keyframe({"ts": 100.0, "totals": {}, "host": {"id": "h"},
                                "containers": records, "addrs": {}})
    changed = {**records[1], "state": "exited"}
    body = {"ts": 105.0, "since": None, "c": {}, "r": {},
            "containers": [0, changed, *range(2, 20)]}
    blob = history_format._pack(100.0, body)
    assert blob[0] == history_format.FORMAT_3
    assert decode_history(blob, frame)["containers"] == [
        records[0], changed, *records[2:]]


@pytest.mark.parametrize("rows", [{"i": [3], "pids": [4]},
                                  {"i": [-1], "pids": [4]},
                                  {"i": [0], "pids": [4]}])
def test_metric_columns_naming_a_record_that_is_not_there_are_refused(rows):
    """Past the records, before them, or on a record without metrics."""
    _, frame = encode_keyframe({"ts": 100.0, "totals": {}, "containers": [],
                                "host": {"id": "h"}, "addrs": {}})
    body = {"ts": 105.0, "since": None, "c": {}, "r": {},
            "containers": [{"id": "a"}], "m": rows}
    with pytest.raises(SchemaError, match="malformed history records"):
        decode_history(history_format._pack(100.0, body), frame)
