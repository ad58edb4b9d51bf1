"""A relay sends a snapshot's parts as it packs them (webapp.maps.frames.FrameStream).

The stored snapshot is read as it is (``LevelRelay._load`` left out) and the
packing slowed down: what is under test is the order of packing and
sending, pure asyncio.
"""

import asyncio
import time

import webapp.maps.relay as relay_module
from webapp.maps.frames import FrameStream, each_frame, pack_frame, unpack_frame
from webapp.maps.relay import LevelRelay

PARTS = 24


class Socket:
    """A map socket's catch-up, noting how far packing was at its first frame."""

    def __init__(self, stream_of):
        self.stream_of = stream_of
        self.frames: list[bytes] = []
        self.packed_at_first: int | None = None
        self.seq = None

    async def catch_up(self, snapshot, diffs, seq):
        async for frame in each_frame(snapshot):
            stream = self.stream_of()
            if self.packed_at_first is None and stream is not None:
                self.packed_at_first = len(stream.frames)
            self.frames.append(frame)
            await asyncio.sleep(0)
        for _, frames in diffs:
            self.frames.extend(frames)
        self.seq = seq

    async def feed_error(self, message):
        raise AssertionError(message)


def slow_packed(texts):
    time.sleep(0.02)  # packing ~8 parts of a fleet's snapshot takes ~40 ms
    return [pack_frame(t) for t in texts]


async def test_the_first_parts_are_sent_before_the_last_are_packed(monkeypatch):
    texts = [f'{{"type":"snapshot","part":{i},"parts":{PARTS}}}' for i in range(PARTS)]
    diff = [pack_frame('{"type":"diff"}')]
    relay = LevelRelay("container")
    monkeypatch.setattr(relay, "_load",
                        lambda *held: (7, None, texts, [(8, diff)]))
    monkeypatch.setattr(relay_module, "_packed", slow_packed)
    streams: list[FrameStream] = []
    original_add = FrameStream.add

    def add(stream, frames):
        if stream not in streams:
            streams.append(stream)
        original_add(stream, frames)

    monkeypatch.setattr(FrameStream, "add", add)
    sockets = [Socket(lambda: streams[0]) for _ in range(2)]
    relay.sockets.update(sockets)
    assert await relay._reload()
    for socket in sockets:
        # Sent while most parts were still to be packed, in order, whole.
        assert socket.packed_at_first is not None
        assert socket.packed_at_first < PARTS
        assert [unpack_frame(f) for f in socket.frames] == [*texts, '{"type":"diff"}']
        assert socket.seq == 8
    # Held whole for the next socket, which is sent the same frames at once.
    assert [unpack_frame(f) for f in relay.snapshot] == texts
    assert relay.seq == 8 and relay.snapshot_seq == 7


async def test_a_held_snapshot_is_reused_not_packed_again(monkeypatch):
    frames = [pack_frame('{"part":0}')]
    relay = LevelRelay("container")
    relay.snapshot_seq, relay.snapshot = 7, frames

    def load(snapshot_seq, snapshot, diffs):
        assert (snapshot_seq, snapshot) == (7, frames)
        return 7, snapshot, ['{"part":0}'], []

    monkeypatch.setattr(relay, "_load", load)
    monkeypatch.setattr(relay_module, "_packed", lambda texts: 1 / 0)
    socket = Socket(lambda: None)
    relay.sockets.add(socket)
    assert await relay._reload(only=socket)
    assert socket.frames == frames and relay.snapshot is frames


async def test_a_stream_given_up_ends_its_readers():
    stream = FrameStream()
    stream.add([b"a"])
    got = []

    async def read():
        async for frame in stream.each():
            got.append(frame)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    stream.finish()  # packing failed: no more parts
    await asyncio.wait_for(reader, 1)
    assert got == [b"a"]
