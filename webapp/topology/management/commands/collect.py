"""``manage.py collect``: run this host's collector."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from collector.reporter import HistoryPolicy
from collector.runner import build_collector, dump_ebpf_program
from collector.schema import SchemaError


class Command(BaseCommand):
    help = "Trace this host's connections and containers and report them to Redis."

    def add_arguments(self, parser):
        parser.add_argument("--duration", type=float, default=None,
                            help="run for this many seconds, then exit")
        parser.add_argument("--interval", type=float,
                            default=settings.PORTOLAN["INTERVAL"],
                            help="seconds between reports (default %(default)s)")
        parser.add_argument("--fallback", action="store_true",
                            help="use the /proc poller even where eBPF loads")
        parser.add_argument("--ebpf-dump", action="store_true",
                            help="print the final BPF C program and exit")

    def handle(self, *args, **opts):
        trace_udp = settings.PORTOLAN["TRACE_UDP"]
        if opts["ebpf_dump"]:
            self.stdout.write(dump_ebpf_program(trace_udp=trace_udp))
            return
        if opts["interval"] <= 0:
            raise CommandError("--interval must be positive")
        try:
            collector = build_collector(
                redis_url=settings.REDIS_URL,
                prefix=settings.PORTOLAN["KEY_PREFIX"],
                host_id=settings.PORTOLAN["HOST_ID"],
                node_ttl=settings.PORTOLAN["NODE_TTL"],
                flow_ttl=settings.PORTOLAN["FLOW_TTL"],
                history=HistoryPolicy(
                    step=settings.PORTOLAN["HISTORY_STEP"],
                    fine=settings.PORTOLAN["HISTORY_FINE"],
                    coarse_step=settings.PORTOLAN["HISTORY_COARSE_STEP"],
                    window=settings.PORTOLAN["HISTORY_WINDOW"],
                ),
                force_fallback=opts["fallback"],
                trace_udp=trace_udp,
            )
        except SchemaError as exc:
            raise CommandError(
                f"PORTOLAN_HOST_ID / PORTOLAN_KEY_PREFIX: {exc}"
            ) from None
        except ValueError as exc:  # a malformed setting, named in the message
            raise CommandError(str(exc)) from None
        self.stderr.write(f"collector {collector.host.id}: {collector.host.mode} mode"
                          + (f" ({collector.host.mode_reason})"
                             if collector.host.mode_reason else ""))
        try:
            collector.run(interval=opts["interval"], duration=opts["duration"])
        except KeyboardInterrupt:
            pass
