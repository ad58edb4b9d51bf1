"""The builder's remembered flow field names (webapp.builder.fields) read a
hash as the format's own reader does (webapp.topology.store.parse_flows), on
the fast path and on the field-by-field one."""

import pytest

from collector.flow_fields import HostFlowFields
from collector.schema import FlowKey, container_node_id, make_flow_field
from webapp.builder.fields import HostFields
from webapp.topology.store import parse_flows

CID = "3f" * 32
KEY = FlowKey(container_node_id("h1", CID), "out", "10.0.0.2", 80)
OTHER = FlowKey(container_node_id("h1", CID), "in", "10.0.0.9", 8080)


def short(key, counter) -> bytes:
    return HostFlowFields("h1", [CID]).name(key, counter).encode()


CASES = {
    "short fields": {short(KEY, "connections"): b"3", short(KEY, "bytes_sent"): b"40",
                     short(OTHER, "connections"): b"1"},
    "a counter written both ways": {
        short(KEY, "connections"): b"3",
        make_flow_field(KEY, "connections").encode(): b"2"},
    "a field that does not parse": {short(KEY, "connections"): b"3",
                                    b"not\ta\tfield": b"7"},
    "a value that is not a number": {short(KEY, "connections"): b"3",
                                     short(KEY, "bytes_sent"): b"x"},
}


@pytest.mark.parametrize("kind", [int, float])
@pytest.mark.parametrize("case", CASES)
def test_flows_read_as_parse_flows_does(case, kind):
    raw = CASES[case]
    fields = HostFields("h1", [CID])
    expected = parse_flows("h1", raw, kind, [CID])
    assert fields.flows(raw, kind) == expected
    assert fields.flows(raw, kind) == expected  # names remembered: the same


def test_a_counter_written_both_ways_is_summed():
    raw = CASES["a counter written both ways"]
    assert HostFields("h1", [CID]).flows(raw) == {KEY: {"connections": 5}}
