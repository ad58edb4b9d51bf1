"""A graph builder running in a thread of the test process (its own event loop)."""

from __future__ import annotations

import asyncio
import threading

from webapp.builder.builder import BuilderSettings, GraphBuilder
from webapp.builder.stored import mark_watched


class BuilderThread:
    """``GraphBuilder.run`` in a daemon thread; ``stop()`` ends it."""

    def __init__(self, url: str, **conf):
        from collector.redis_client import redis_client

        self.url = url
        self.builder = GraphBuilder(
            redis_client(url, socket_connect_timeout=1.0, socket_timeout=5.0),
            BuilderSettings(**conf))
        self.builder._url = lambda: url
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            self.started.set()
            await self.builder.run(stop=self.stop_event)

        asyncio.run(main())

    def start(self) -> BuilderThread:
        self.thread.start()
        self.started.wait(5)
        return self

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(10)
        self.builder.client.close()

    def holds(self, node_id: str, level: str = "container") -> bool:
        """Whether the builder's graph at ``level`` has the node yet."""
        graph = self.builder.views[level].graph
        return graph is not None and node_id in graph.nodes

    async def wait_holds(self, node_id: str, level: str = "container",
                         timeout: float = 5.0) -> None:
        """Wait until the builder has taken a report in (its graph holds it);
        the level is marked watched, as a map open on it would."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        mark_watched(self.builder.client, self.builder.gkeys, level)
        while not self.holds(node_id, level):
            assert loop.time() < deadline, f"the builder never built {node_id}"
            await asyncio.sleep(0.05)

    async def wait_stored(self, level: str = "container", timeout: float = 5.0):
        """Wait until the builder has stored a first graph at ``level`` (marked
        watched, as a map open on it would)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        mark_watched(self.builder.client, self.builder.gkeys, level)
        key = self.builder.gkeys.snapshot(level)
        while not self.builder.client.exists(key):
            assert loop.time() < deadline, "the builder stored no graph"
            await asyncio.sleep(0.05)
