"""The map socket's binary frames: a message's JSON, compressed once for all sockets.

Daphne copies each message into every open socket's buffers and the kernel
sends it once per socket, so a relay's CPU grows with bytes times sockets: at
10,000 containers a diff is megabytes of JSON, and fifty maps cost a Daphne
worker more than a tenth of a core. A zlib stream of that JSON is about a tenth
of its size, and is made once (the builder compresses each diff it publishes,
a relay each snapshot part it loads); a text frame would also be UTF-8 encoded
again for each socket. Browsers inflate it natively
(``DecompressionStream("deflate")`` in ``frontend/src/socket.js``). Small
control messages (errors) stay text frames.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterable

__all__ = ["FRAME_LEVEL", "FrameStream", "each_frame", "pack_frame", "unpack_frame"]

# zlib's fastest level: JSON of ids and counters shrinks 5-10x at ~10 ms per
# MB; higher levels cost several times that for a few per cent less.
FRAME_LEVEL = 1


def pack_frame(text: str | bytes) -> bytes:
    """One encoded message (JSON text, or its UTF-8 bytes as the builder
    makes them) as the binary frame a map socket sends.

    >>> unpack_frame(pack_frame('{"type":"diff"}'))
    '{"type":"diff"}'
    >>> unpack_frame(pack_frame(b'{"type":"diff"}'))
    '{"type":"diff"}'
    """
    return zlib.compress(text if isinstance(text, bytes) else text.encode(),
                         FRAME_LEVEL)


def unpack_frame(data: bytes) -> str:
    """The JSON text of a binary frame (what the browser does natively)."""
    return zlib.decompress(data).decode()


class FrameStream:
    """A snapshot's frames while a relay packs them: the sockets it goes to
    send each part as soon as it is packed, not once all are (at 10,000
    containers, ~50 MB of JSON in ~100 parts: ~0.5 s of packing, which the
    browser now spends inflating and parsing the first parts)."""

    def __init__(self):
        self.frames: list[bytes] = []
        self.done = False
        self._more = asyncio.Event()

    def add(self, frames: Iterable[bytes]) -> None:
        self.frames.extend(frames)
        self._wake()

    def finish(self) -> None:
        """No more frames: packed whole, or given up (a socket's browser then
        holds a snapshot's first parts, which the next snapshot's replace)."""
        self.done = True
        self._wake()

    def _wake(self) -> None:
        more, self._more = self._more, asyncio.Event()
        more.set()

    async def each(self) -> AsyncIterator[bytes]:
        sent = 0
        while True:
            more = self._more
            if sent < len(self.frames):
                yield self.frames[sent]
                sent += 1
            elif self.done:
                return
            else:
                await more.wait()


async def each_frame(frames: list[bytes] | FrameStream) -> AsyncIterator[bytes]:
    """The frames of a snapshot held whole (a list) or still being packed."""
    if isinstance(frames, FrameStream):
        async for frame in frames.each():
            yield frame
    else:
        for frame in frames:
            yield frame
