import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.schema import (
    ContainerRecord,
    FlowKey,
    Keys,
    SchemaError,
    container_node_id,
    external_node_id,
    host_node_id,
    host_of_node,
    make_flow_field,
    parse_flow_field,
    parse_node_id,
    process_node_id,
    service_node_id,
    validate_host_id,
)

HOSTILE = ["<img src=x onerror=alert(1)>", "a:b:c", "tab\there", "50%", "x\ny", "é"]


@given(st.text(min_size=1, max_size=40))
def test_container_id_round_trips_any_text(cid):
    kind, parts = parse_node_id(container_node_id("h1", cid))
    assert (kind, parts) == ("container", ("h1", cid))


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_command_cannot_forge_separators(name):
    node = process_node_id("h1", name)
    assert "\t" not in node and node.count(":") == 2
    assert parse_node_id(node) == ("process", ("h1", name))


def test_service_id_keeps_owner_whole():
    owner = container_node_id("h1", "abc")
    sid = service_node_id(owner, 80, "tcp")
    kind, parts = parse_node_id(sid)
    assert kind == "service" and parts == (owner, "80/tcp")
    assert host_of_node(sid) == "h1"
    assert host_of_node(external_node_id("1.2.3.4")) is None


@pytest.mark.parametrize("bad", ["", "a b", "x:y", "../etc", "-lead", "a" * 300])
def test_bad_host_ids_are_refused(bad):
    with pytest.raises(SchemaError):
        validate_host_id(bad)


@pytest.mark.parametrize("bad", ["nokind", "martian:x", "container:onlyone"])
def test_bad_node_ids_are_refused(bad):
    with pytest.raises(SchemaError):
        parse_node_id(bad)


@given(
    st.sampled_from(["out", "in"]),
    st.ip_addresses().map(str),
    st.integers(0, 65535),
    st.sampled_from(["tcp", "udp"]),
)
def test_flow_field_round_trips(direction, ip, port, proto):
    key = FlowKey(container_node_id("h", "c"), direction, ip, port, proto)
    assert parse_flow_field(make_flow_field(key, "bytes_sent")) == (key, "bytes_sent")


@pytest.mark.parametrize(
    "field",
    ["", "a\tb", "container:h:c\tout\t1.1.1.1\tx\ttcp\tconnections",
     "container:h:c\tout\t1.1.1.1\t80\ttcp\tnot_a_counter",
     "container:h:c\tsideways\t1.1.1.1\t80\ttcp\tconnections"],
)
def test_malformed_flow_fields_raise_schema_error(field):
    with pytest.raises(SchemaError):
        parse_flow_field(field)


def test_container_record_json_round_trip_and_status():
    rec = ContainerRecord(id="abc", name=HOSTILE[0], state="exited", exit_code=137,
                          labels={"x": HOSTILE[0]})
    back = ContainerRecord.from_json(rec.to_json())
    assert back == rec and back.status == "critical"
    assert ContainerRecord(id="a", name="a", state="running").status == "ok"
    assert ContainerRecord(id="a", name="a", state="exited").status == "stopped"
    with pytest.raises(SchemaError):
        ContainerRecord.from_json("{not json")


def test_keys_are_prefixed_and_checked():
    k = Keys("pfx")
    assert k.flows("h1") == "pfx:flows:{h1}" and k.collectors == "pfx:collectors"
    assert host_node_id("h1") == "host:h1"
    with pytest.raises(SchemaError):
        Keys("bad prefix")
    with pytest.raises(SchemaError):
        k.flows("bad host")


def test_keys_written_together_share_a_cluster_slot():
    """One host's keys (one transaction per report) and the analyzer's keys
    (one transaction per step) each hash to one Redis Cluster slot."""
    from redis.crc import key_slot

    k = Keys("pfx")
    host_keys = [k.host("h1"), k.containers("h1"), k.addrs("h1"), k.flows("h1"),
                 k.rates("h1"), k.history("h1", "fine"),
                 k.history("h1", "coarse"), k.applied("h1"), k.ids("h1"),
                 k.container_metrics("h1")]
    assert len({key_slot(key.encode()) for key in host_keys}) == 1
    anomaly = [k.anomaly(p) for p in ("status", "causes", "events", "lock",
                                       "history", "failures")]
    assert len({key_slot(key.encode()) for key in anomaly}) == 1


def test_history_blobs_are_zstd_and_those_written_before_in_zlib_still_decode():
    import zlib

    from collector.schema import (
        decode_snapshot,
        decode_snapshot_counts,
        encode_snapshot,
    )

    snapshot = {"ts": 5.0, "since": 0.0, "counts": {"f\tconnections": 3},
                "containers": [{"id": "c" * 64, "name": "web"}] * 20}
    blob = encode_snapshot(snapshot)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert decode_snapshot(blob) == snapshot
    assert decode_snapshot_counts(blob) == {"f\tconnections": 3}
    # As the collector wrote them before: counts first, zlib level 6.
    old = zlib.compress(blob_text(snapshot).encode(), 6)
    assert decode_snapshot(old) == snapshot
    assert decode_snapshot_counts(old) == {"f\tconnections": 3}
    for bad in (b"\x28\xb5\x2f\xfd" + b"x" * 20, b"not zlib", blob[:-3]):
        with pytest.raises(SchemaError):
            decode_snapshot(bad)


def blob_text(snapshot: dict) -> str:
    import json
    rest = {k: v for k, v in snapshot.items() if k != "counts"}
    body = json.dumps(rest, separators=(",", ":"), sort_keys=True)
    return ('{"counts":' + json.dumps(snapshot["counts"], separators=(",", ":"))
            + "," + body[1:])


def test_records_parse_the_same_without_orjson(monkeypatch):
    """The collector's image has no orjson (a web extra): records still read,
    and read the same."""
    import collector.schema as schema

    text = ContainerRecord(id="c1", name="web", state="running", metrics={
        "cpu_cores": 0.1234, "memory_working_set_bytes": 1 << 40}).to_json()
    with_orjson = ContainerRecord.from_json(text)
    monkeypatch.setattr(schema, "orjson", None)
    assert ContainerRecord.from_json(text) == with_orjson
    with pytest.raises(SchemaError, match="malformed container record"):
        ContainerRecord.from_json("{not json")
