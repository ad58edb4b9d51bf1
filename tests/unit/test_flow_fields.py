"""The live flow hashes' short field names (collector.flow_fields)."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.flow_fields import (
    COUNTER_CODES,
    HostFlowFields,
    canonical_flow_fields,
    short_container_ids,
)
from collector.schema import (
    COUNTERS,
    FlowKey,
    SchemaError,
    container_node_id,
    host_node_id,
    make_flow_field,
    process_node_id,
)

A = "3f2a9b1c0d4e" + "a" * 52
B = "3f2a9b1c0d4e" + "b" * 52  # the same short id as A
C = "77" * 32

docker_ids = st.text("0123456789abcdef", min_size=64, max_size=64)
addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


def nodes(host: str, cids) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([container_node_id(host, c) for c in cids]),
        st.just(host_node_id(host)),
        st.text(min_size=0, max_size=20).map(lambda c: process_node_id(host, c)),
        st.just(container_node_id("other-host", C)),
        st.just("external:10.0.0.1"),
    )


@given(cids=st.lists(docker_ids, min_size=1, max_size=5), data=st.data(),
       ip=addresses, port=st.integers(0, 65535), proto=st.sampled_from(["tcp", "udp"]),
       direction=st.sampled_from(["out", "in"]), counter=st.sampled_from(COUNTERS))
def test_fields_round_trip(cids, data, ip, port, proto, direction, counter):
    node = data.draw(nodes("h1", cids))
    key = FlowKey(node, direction, ip, port, proto)
    fields = HostFlowFields("h1", cids)
    name = fields.name(key, counter)
    assert fields.parse(name) == (key, counter)
    # What another reader with the same records makes of it.
    assert HostFlowFields("h1", list(reversed(cids))).parse(name) == (key, counter)
    assert fields.canonical(name) == make_flow_field(key, counter)


@pytest.mark.parametrize("counter", COUNTERS)
def test_a_docker_containers_ipv4_field_fits_a_stock_listpack(counter):
    fields = HostFlowFields("a-rather-long-host-name.example.org", [A, C])
    key = FlowKey(container_node_id("a-rather-long-host-name.example.org", A),
                  "out", "255.255.255.255", 65535, "udp")
    assert len(fields.name(key, counter).encode()) <= 64  # hash-max-listpack-value
    six = FlowKey(key.node, "in", "fd00:1234:5678:9abc:def0:1234:5678:9abc", 443)
    assert len(fields.name(six, counter).encode()) <= 66


def test_canonical_fields_of_hashes_written_before_are_read():
    fields = HostFlowFields("h1", [A])
    key = FlowKey(container_node_id("h1", A), "out", "fe80::1", 53, "udp")
    assert fields.parse(make_flow_field(key, "datagrams_sent")) == (
        key, "datagrams_sent")


def test_short_ids_that_would_name_two_containers_stay_whole():
    assert short_container_ids([A, B, C]) == {A: A, B: B, C: C[:12]}
    # A container whose whole id is another's short id keeps that one whole.
    assert short_container_ids([A, A[:12]]) == {A: A, A[:12]: A[:12]}
    fields = HostFlowFields("h1", [A, B])
    for cid in (A, B):
        key = FlowKey(container_node_id("h1", cid), "out", "10.0.0.2", 80)
        name = fields.name(key, "connections")
        assert cid in name and fields.parse(name)[0] == key


def test_the_ids_hash_keeps_a_short_id_meaning_its_first_container():
    """A's field was written short; then B came with the same short id: with
    the host's ids hash the field is still A's, and B's fields are whole."""
    key_a = FlowKey(container_node_id("h1", A), "out", "10.0.0.2", 80)
    first = HostFlowFields("h1", [A])
    written = first.name(key_a, "connections")
    assert first.short_ids() == {A[:12]: A}
    later = HostFlowFields("h1", [A, B], taken={A[:12].encode(): A.encode()})
    assert later.parse(written) == (key_a, "connections")
    key_b = FlowKey(container_node_id("h1", B), "out", "10.0.0.2", 80)
    assert later.parse(later.name(key_b, "connections"))[0] == key_b
    assert B in later.name(key_b, "connections")
    # B alone, A gone: its short id is taken, so B's fields stay whole.
    alone = HostFlowFields("h1", [B], taken={A[:12]: A})
    assert B in alone.name(key_b, "connections")
    assert alone.parse(written)[0] == key_a


def test_without_the_ids_hash_a_colliding_short_id_is_given_to_neither(caplog):
    written = HostFlowFields("h1", [A]).name(
        FlowKey(container_node_id("h1", A), "out", "10.0.0.2", 80), "connections")
    with caplog.at_level(logging.WARNING, "portolan.collector.flow_fields"):
        key, _ = HostFlowFields("h1", [A, B]).parse(written)
    assert key.node == container_node_id("h1", A[:12])
    assert "names 2 containers" in caplog.text


def test_a_gone_containers_fields_keep_its_id():
    key = FlowKey(container_node_id("h1", A), "out", "10.0.0.2", 80)
    short = HostFlowFields("h1", [A]).name(key, "connections")
    gone = HostFlowFields("h1", [], taken={A[:12]: A})
    # Read back, and written again, under the short id it had.
    assert gone.parse(short)[0] == key
    assert gone.name(key, "connections") == short
    # Neither its record nor the ids hash: the short id is all there is.
    assert HostFlowFields("h1", []).parse(short)[0].node == container_node_id(
        "h1", A[:12])
    # Written without its record nor an id: whole, and read back whole.
    lost = HostFlowFields("h1", [])
    assert lost.parse(lost.name(key, "connections"))[0] == key


@pytest.mark.parametrize("name", [
    "", "c1\to\t10.0.0.1\t80\tt", "c1\tx\t10.0.0.1\t80\tt\tc",
    "c1\to\t10.0.0.1\tport\tt\tc", "c1\to\t10.0.0.1\t80\tsctp\tc",
    "c1\to\t10.0.0.1\t80\tt\tzz", "q1\to\t10.0.0.1\t80\tt\tc",
    "c\to\t10.0.0.1\t80\tt\tc", "h1\to\t10.0.0.1\t80\tt\tc",
])
def test_malformed_fields_raise_schema_error(name):
    with pytest.raises(SchemaError):
        HostFlowFields("h1", []).parse(name)


def test_a_tab_in_an_address_cannot_forge_a_separator():
    key = FlowKey(host_node_id("h1"), "out", "1.2.3.4\tin", 80)
    fields = HostFlowFields("h1")
    assert fields.parse(fields.name(key, "connections")) == (key, "connections")


def test_counter_codes_are_unique_and_never_a_counters_name():
    codes = list(COUNTER_CODES.values())
    assert len(set(codes)) == len(codes)
    assert not set(codes) & set(COUNTERS)


def test_canonical_flow_fields_adds_up_a_counter_written_both_ways():
    key = FlowKey(container_node_id("h1", A), "out", "10.0.0.2", 80)
    fields = HostFlowFields("h1", [A])
    raw = {fields.name(key, "connections").encode(): b"3",
           make_flow_field(key, "connections").encode(): b"4",
           b"garbage": b"1"}
    assert canonical_flow_fields("h1", [A], raw) == {
        make_flow_field(key, "connections"): 7}
