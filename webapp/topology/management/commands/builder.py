"""``manage.py builder``: keep every level's live graph for all web workers."""

import asyncio
import signal
import threading

from django.core.management.base import BaseCommand

from webapp.builder.builder import GraphBuilder


class Command(BaseCommand):
    help = ("Build the map's graphs from the collectors' changes, store them and "
            "publish their diffs (one active per Redis; others stand by).")

    def add_arguments(self, parser):
        parser.add_argument("--duration", type=float, help="stop after S seconds")
        parser.add_argument("--lease-ttl", type=float,
                            help="seconds a standby waits before taking over")
        parser.add_argument("--timings", metavar="FILE",
                            help="append each round's stage times to FILE "
                                 "(JSON lines; bench/fleet_scale.py)")
        parser.add_argument("--store-first", action="store_true",
                            help="store each round's diffs before publishing "
                                 "them, as builders before did (benchmarks)")

    def handle(self, *args, **opts):
        builder = GraphBuilder.from_settings(
            lease_ttl=opts["lease_ttl"], timings_path=opts["timings"],
            publish_first=not opts["store_first"])
        # Garbage is collected between rounds, not in the middle of a build
        # (webapp/round_collector.py).
        builder.collector.take_over()
        try:
            asyncio.run(_until_terminated(builder, opts["duration"]))
        except KeyboardInterrupt:
            pass
        finally:
            builder.collector.release()


async def _until_terminated(builder: GraphBuilder, duration: float | None) -> None:
    """Run the builder until SIGTERM (``docker stop``, a Kubernetes rollout):
    it ends its round and gives up its lease, so a standby takes over at once
    rather than once the lease lapses."""
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():  # else: none
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await builder.run(duration=duration, stop=stop)
