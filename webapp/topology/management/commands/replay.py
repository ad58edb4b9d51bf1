"""``manage.py replay``: write capture files into Redis as their collectors did."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from collector.capture.replayer import Replayer
from collector.redis_client import REDIS_ERRORS
from collector.reporter import HistoryPolicy, redis_client
from collector.schema import Keys


class Command(BaseCommand):
    help = ("Replay capture files into Redis (several files merge into one map); "
            "the map, the slider, the details and the analyzer work on them.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        pace = parser.add_mutually_exclusive_group()
        pace.add_argument("--speed", type=float, default=1.0,
                          help="recorded seconds per second (default 1)")
        pace.add_argument("--fast", action="store_true",
                          help="as fast as Redis takes it")
        parser.add_argument("--keep-times", action="store_true",
                            help="with --fast: at the recorded times (else the "
                            "capture ends now)")
        parser.add_argument("--loop", action="store_true",
                            help="start again at the end, until Ctrl-C")

    def handle(self, *args, **opts):
        if not opts["fast"] and not opts["speed"] > 0:
            raise CommandError(f"--speed must be positive, not {opts['speed']}")
        conf = settings.PORTOLAN
        replayer = Replayer(
            redis_client(settings.REDIS_URL), Keys(conf["KEY_PREFIX"]),
            node_ttl=conf["NODE_TTL"], flow_ttl=conf["FLOW_TTL"],
            history=HistoryPolicy(conf["HISTORY_STEP"], conf["HISTORY_FINE"],
                                  conf["HISTORY_COARSE_STEP"],
                                  conf["HISTORY_WINDOW"]),
            speed=None if opts["fast"] else opts["speed"],
            keep_times=opts["keep_times"])
        stopping = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.append(1))
        try:
            stats = replayer.replay(opts["files"], loop=opts["loop"],
                                    should_stop=lambda: bool(stopping))
        except REDIS_ERRORS as exc:
            raise CommandError(f"Redis unreachable: {exc}") from None
        self.stdout.write(f"replayed {stats.reports} reports in {stats.passes} "
                          f"passes from {len(opts['files'])} files")
        if stats.errors:
            raise CommandError("; ".join(str(e) for e in stats.errors)
                               + " (everything before it was replayed)")
