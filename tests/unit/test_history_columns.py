"""History format 3's packed columns (collector.history_columns): exact round
trips, or None where a value cannot be packed exactly (format 2 then)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import collector.history_format as history_format
from collector.history_columns import pack_columns, unpack_columns
from collector.history_format import decode_history, encode_history, encode_keyframe
from collector.schema import SchemaError

ints = st.integers(-(2**63), 2**64 - 1)
milli = st.integers(0, 10**15).map(lambda m: m / 1000)
whole = st.integers(0, 10**12).map(float)


def columns(values):
    return st.dictionaries(st.text(min_size=1, max_size=12),
                           st.lists(st.none() | values, max_size=40), max_size=5)


@given(c=columns(ints), r=columns(milli | whole))
def test_columns_round_trip_exactly(c, r):
    packed = pack_columns([c, r])
    present = [[v for v in col if v is not None] for col in c.values()]
    if any(col and min(col) < 0 and max(col) >= 2**63 for col in present):
        assert packed is None  # signed and past 63 bits: 65 bits wide
        return
    assert packed is not None
    back = unpack_columns(packed, 2)
    assert back == [c, r]
    for got, want in zip(back, [c, r], strict=True):  # ints stay ints
        for name in want:
            assert [type(v) for v in got[name]] == [type(v) for v in want[name]]


pages = st.integers(-(2**40), 2**40).map(lambda n: n << 12)
decimals = st.integers(0, 10**9).flatmap(
    lambda n: st.sampled_from([n / 10, n / 100, n / 10**4, n / 10**6]))


@settings(deadline=None)  # a loaded CI machine is no reason to fail
@given(c=columns(ints | pages), r=columns(decimals | milli))
def test_format_4_columns_round_trip_exactly(c, r):
    """Format 4's own kinds: floats of up to 6 decimals, values that share
    trailing zero bits (memory in pages), mixed with anything else."""
    packed = pack_columns([c, r], scaled=True)
    present = [[v for v in col if v is not None] for col in c.values()]
    if any(col and min(col) < 0 and max(col) >= 2**63 for col in present):
        assert packed is None
        return
    if packed is None:  # a float that is not exact at 6 decimals
        assert any(round(v * 10**6) / 10**6 != v for col in r.values()
                   for v in col if v is not None)
        return
    back = unpack_columns(packed, 2)
    assert back == [c, r]
    for got, want in zip(back, [c, r], strict=True):
        for name in want:
            assert [type(v) for v in got[name]] == [type(v) for v in want[name]]


def test_memory_in_pages_packs_narrower_in_format_4():
    rng = random.Random(3)
    column = {"memory_working_set_bytes": [rng.randint(10_000, 100_000) << 12
                                           for _ in range(20)]}
    shifted = pack_columns([column], scaled=True)
    assert unpack_columns(shifted, 1) == [column]
    # A byte a value narrower; one more byte says by how much.
    assert len(shifted) <= len(pack_columns([column])) - 20 + 1


@pytest.mark.parametrize("column", [
    [0.1234],            # more than three decimals
    [1, 2.5],            # ints and floats mixed
    [True, 2],           # a bool
    [float("nan")],
    [-(2**63) - 1],      # past 64 bits, signed
    [2**64],             # past 64 bits
    ["7"],
])
def test_a_value_that_cannot_pack_exactly_is_refused(column):
    assert pack_columns([{"x": column}]) is None


def test_malformed_columns_are_a_clear_error():
    packed = pack_columns([{"i": [1, 2, 3], "connections": [400, None, 70000]}])
    assert unpack_columns(packed, 1) == [
        {"i": [1, 2, 3], "connections": [400, None, 70000]}]
    unknown_name = packed[:1] + b"\xee" + packed[2:]
    for bad in (packed[:-1], packed + b"\x00", unknown_name, b"\x01\x00\x05"):
        with pytest.raises(SchemaError, match="malformed history columns"):
            unpack_columns(bad, 1)


def snapshot(rng, flows=100):
    """A coarse-like step of random counts and rates (the fleet bench's kind)."""
    names = [f"container:h:{i:064x}\tout\t10.0.{i}.1\t80\ttcp" for i in range(flows)]
    counts, rates = {}, {}
    for f in names:
        counts[f"{f}\tconnections"] = rng.randint(1, 150)
        counts[f"{f}\tbytes_sent"] = rng.randint(100, 25_000)
        counts[f"{f}\tbytes_received"] = rng.randint(100, 250_000)
        if rng.random() < 0.2:
            rates[f"{f}\tbytes_sent"] = round(rng.randint(100, 5_000) / 3, 3)
    totals = dict.fromkeys(counts, 1)
    return names, counts, rates, totals


def test_format_3_is_written_smaller_and_reads_exactly(monkeypatch):
    rng = random.Random(7)
    _, counts, rates, totals = snapshot(rng)
    _, frame = encode_keyframe({"ts": 100.0, "totals": totals})
    # A tier's first snapshot (no ``since``): the one that stores rates.
    snap = {"ts": 160.0, "since": None, "counts": counts, "rates": rates}
    packed = encode_history(snap, frame)
    assert packed[0] == history_format.FORMAT_3
    assert decode_history(packed, frame) == snap
    monkeypatch.setattr(history_format, "pack_columns",
                        lambda parts, scaled=False: None)
    text = encode_history(snap, frame)
    assert text[0] == history_format.FORMAT_2
    assert decode_history(text, frame) == snap  # format 2 still reads
    assert len(packed) < 0.85 * len(text), (len(packed), len(text))


def test_a_rate_with_more_decimals_keeps_format_2_and_its_value():
    _, frame = encode_keyframe({"ts": 100.0, "totals": {"f\tconnections": 1}})
    snap = {"ts": 105.0, "since": None, "counts": {"f\tconnections": 2},
            "rates": {"f\tconnections": 0.12345}}
    blob = encode_history(snap, frame)
    assert blob[0] == history_format.FORMAT_2
    assert decode_history(blob, frame) == snap
