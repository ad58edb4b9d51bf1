"""``manage.py analyze``: run the anomaly analyzer (one active per Redis)."""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from webapp.anomalies import ConfigError
from webapp.anomalies.analyzer import Analyzer


class Command(BaseCommand):
    help = "Judge the live topology every interval: statuses, causes, events."

    def add_arguments(self, parser):
        parser.add_argument("--duration", type=float, help="stop after S seconds")
        parser.add_argument("--interval", type=float, help="seconds between steps")

    def handle(self, *args, **opts):
        try:
            analyzer = Analyzer.from_settings(interval=opts["interval"])
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        # Garbage is collected between steps, not in the middle of one
        # (webapp/round_collector.py).
        analyzer.collector.take_over()
        # SIGTERM (docker stop, a Kubernetes rollout): end the step, give the
        # lock up, so a standby takes over at once rather than once it lapses.
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():  # else: none
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            analyzer.run(duration=opts["duration"], stop=stop)
        finally:
            analyzer.collector.release()
