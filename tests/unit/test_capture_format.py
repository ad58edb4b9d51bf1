"""Capture files: what is written reads back, and every bad file is answered
with the file, the block and what is wrong."""

import struct
import zlib

import msgpack
import pytest
import zstandard

from collector.capture.format import (
    MAGIC,
    CaptureError,
    CaptureReader,
    CaptureWriter,
    Event,
    Header,
    Report,
    capture_summary,
)
from collector.schema import (
    ContainerRecord,
    FlowKey,
    HostRecord,
    container_node_id,
    make_flow_field,
)

T0 = 1_750_000_000.0
FLOW = make_flow_field(FlowKey(container_node_id("h1", "a"), "out", "10.0.0.3", 80),
                       "connections")


def report(ts, host="h1", n=1, **extra):
    return Report(ts=ts, host=HostRecord(id=host, hostname=host),
                  containers=[ContainerRecord(id="a", name="web <b>",
                                              ips=["10.0.0.2"])],
                  addrs={"10.0.0.2": container_node_id(host, "a")},
                  flows={FLOW: n}, rates={FLOW: float(n)}, history=("fine",),
                  **extra)


def write(path, blocks):
    """A capture with one block per list of records."""
    with CaptureWriter(path, Header(hosts=["h1"], created=T0, source="test")) as w:
        for records in blocks:
            for r in records:
                w.write(r)
            w.flush()
    return path


def block_offsets(path):
    with CaptureReader(path) as reader:
        return [info.offset for info in reader.block_infos()]


def test_round_trip_keeps_every_field(tmp_path):
    path = write(tmp_path / "a.capture", [
        [report(T0, base={FLOW: 7}), Event(T0 + 0.5, {"kind": "started"})],
        [report(T0 + 1, host="h2", n=3)],
    ])
    records = list(CaptureReader(path).records())
    assert [type(r).__name__ for r in records] == ["Report", "Event", "Report"]
    first = records[0]
    assert first.base == {FLOW: 7} and first.flows == {FLOW: 1}
    assert first.containers[0].name == "web <b>"  # markup is data, kept as is
    assert first.history == ("fine",)
    assert records[2].host.id == "h2"
    info = capture_summary(path)
    assert info["version"] == 1 and info["blocks"] == 2
    assert info["hosts"] == ["h1", "h2"]
    assert info["records"] == {"report": 2, "event": 1}
    assert (info["first"], info["last"]) == (T0, T0 + 1)


def test_writer_never_overwrites(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)]])
    with pytest.raises(FileExistsError):
        CaptureWriter(path, Header())


def read_all(path):
    with CaptureReader(path) as reader:
        return [records for _, records in reader.blocks()]


def expect_error(path, block, words):
    with pytest.raises(CaptureError) as err:
        read_all(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert ("header" if block is None else f"block {block}") in message, message
    assert words in message, message
    return err.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.capture"
    path.write_bytes(b"")
    expect_error(path, None, "empty file")


def test_not_a_capture(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a capture\n")
    expect_error(path, None, "not a Portolan capture")


def test_wrong_version(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)]])
    data = bytearray(path.read_bytes())
    struct.pack_into(">H", data, len(MAGIC), 7)
    path.write_bytes(bytes(data))
    expect_error(path, None, "format version 7; this Portolan reads version 1")


def test_truncated_header(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)]])
    path.write_bytes(path.read_bytes()[:20])
    expect_error(path, None, "truncated header")


@pytest.mark.parametrize("cut", [3, 20, 60])
def test_truncated_block_keeps_the_blocks_before(tmp_path, cut):
    path = write(tmp_path / "a.capture", [[report(T0)], [report(T0 + 1)]])
    second = block_offsets(path)[1]
    path.write_bytes(path.read_bytes()[:second + cut])
    reader = CaptureReader(path)
    blocks = reader.blocks()
    assert next(blocks)[1][0].ts == T0  # the first block still reads
    with pytest.raises(CaptureError, match=r"block 1 \(byte \d+\): truncated"):
        next(blocks)


def test_flipped_byte_in_payload(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)], [report(T0 + 1)]])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    expect_error(path, 1, "checksum mismatch")


def test_flipped_byte_in_frame(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)]])
    data = bytearray(path.read_bytes())
    data[block_offsets(path)[0] + 1] ^= 0x01  # the block marker
    path.write_bytes(bytes(data))
    expect_error(path, 0, "no block marker")


def test_absurd_length_is_refused_before_reading(tmp_path):
    path = write(tmp_path / "a.capture", [[report(T0)]])
    data = bytearray(path.read_bytes())
    struct.pack_into(">I", data, block_offsets(path)[0] + 8, 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    expect_error(path, 0, "out of bounds")


def forged(path, wire_records):
    """A capture whose one block holds ``wire_records`` as given, with valid
    framing and checksum: only the records themselves are wrong."""
    write(path, [])
    payload = zstandard.ZstdCompressor().compress(msgpack.packb(wire_records))
    meta = (b'{"first": 1750000000.0, "hosts": {}, "kinds": {}, "last": '
            b'1750000000.0, "records": %d}' % len(wire_records))
    with open(path, "ab") as f:
        f.write(struct.pack(">4sIII", b"\xffBLK", len(meta), len(payload),
                            zlib.crc32(payload, zlib.crc32(meta))) + meta + payload)
    return path


def good_wire(**changes):
    wire = report(T0).to_wire()
    wire.update(changes)
    return wire


@pytest.mark.parametrize("changes, words", [
    ({"flows": {FLOW: -5}}, "counter -5 out of range"),
    ({"flows": {FLOW: 1 << 63}}, "out of range"),
    ({"flows": {FLOW: 1.5}}, "not an integer"),
    ({"rates": {FLOW: float("nan")}}, "rate nan out of range"),
    ({"ts": 99.0}, "time 99.0 out of range"),
    ({"ts": 1e12}, "out of range"),
    ({"k": "secret"}, "unknown record kind"),
    ({"host": {"id": "../../etc"}}, "invalid host id"),
    ({"host": {"id": "h1", "hostname": "evil\x1b[31m"}}, "control character"),
    ({"host": {"id": "h1", "hostname": "x" * 70_000}}, "string of 70000"),
    ({"flows": {"container:h1:a\tout\t10.0.0.3": 1}}, "invalid flow field"),
    ({"addrs": {"10.0.0.2": "nonsense:node"}}, "invalid node id"),
    ({"containers": [{"id": "a", "name": ["not", "a", "string"]}]},
     "expected str"),
    ({"containers": [{"id": "a", "metrics": {"cpu": {"d": {"e": {"f": {"g": {
        "h": {"i": {"j": {"k": 1}}}}}}}}}}]}, "nested too deep"),
    ({"interval": 0}, "interval 0 out of range"),
    ({"history": ["forever"]}, "unknown history tier"),
])
def test_out_of_range_records(tmp_path, changes, words):
    path = forged(tmp_path / "bad.capture", [good_wire(), good_wire(**changes)])
    err = expect_error(path, 0, words)
    assert "record 1" in str(err)  # which record of the block


def test_record_count_must_match_the_summary(tmp_path):
    path = forged(tmp_path / "bad.capture", [good_wire()])
    data = path.read_bytes().replace(b'"records": 1}', b'"records": 2}')
    # The summary is under the checksum too: recompute it to reach the check.
    head_end = data.index(b"\xffBLK")
    frame = data[head_end:]
    meta_len, payload_len = struct.unpack_from(">II", frame, 4)
    meta, payload = frame[16:16 + meta_len], frame[16 + meta_len:]
    path.write_bytes(data[:head_end] + struct.pack(
        ">4sIII", b"\xffBLK", meta_len, payload_len,
        zlib.crc32(payload, zlib.crc32(meta))) + meta + payload)
    expect_error(path, 0, "record count differs")


def test_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        CaptureReader(tmp_path / "nope.capture")
