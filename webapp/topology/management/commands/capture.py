"""``manage.py capture``: record what the collectors report into a capture file."""

import datetime
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from collector.capture.format import (
    CaptureError,
    CaptureWriter,
    Header,
    capture_summary,
)
from collector.capture.recorder import ContainerFilter, history_records, record_live
from collector.redis_client import REDIS_ERRORS
from collector.schema import Keys, SchemaError, validate_host_id
from webapp.topology import service


class Command(BaseCommand):
    help = ("Record the collectors' reports into FILE, live (until --duration, "
            "--until or Ctrl-C) or for a past window (--since/--until) from "
            "history; or describe a capture with --info FILE.")

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("-w", "--write", metavar="FILE", help="capture into FILE")
        mode.add_argument("--info", metavar="FILE", help="describe FILE")
        parser.add_argument("--duration", type=float, help="stop after S seconds")
        parser.add_argument("--hosts", nargs="+", metavar="HOST", default=[])
        parser.add_argument("--container", nargs="+", metavar="NAME|LABEL=VALUE",
                            default=[], help="keep only these containers (name "
                            "glob, or label=value)")
        parser.add_argument("--since", help="ISO time or unix seconds: a past "
                            "window from history")
        parser.add_argument("--until", help="end of the window (default now)")

    def handle(self, *args, **opts):
        if opts["info"]:
            return self.print_info(opts["info"])
        try:
            hosts = {validate_host_id(h) for h in opts["hosts"]}
            since = service.parse_time(opts["since"]) if opts["since"] else None
            until = service.parse_time(opts["until"]) if opts["until"] else None
        except (SchemaError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        filt = ContainerFilter(opts["container"])
        client = service.redis_client()
        keys = Keys(settings.PORTOLAN["KEY_PREFIX"])
        try:
            writer = CaptureWriter(opts["write"], Header(
                hosts=sorted(hosts), created=time.time(),
                source="history" if since is not None else "live",
                notes={"containers": opts["container"]}))
        except OSError as exc:
            raise CommandError(f"{opts['write']}: cannot create: {exc.strerror}"
                               ) from None
        try:
            if since is not None:
                for record in history_records(client, keys, since,
                                              until or time.time(), hosts, filt):
                    writer.write(record)
            else:
                self.record(client, keys, writer, hosts, filt, opts["duration"],
                            until)
        except REDIS_ERRORS as exc:
            raise CommandError(f"Redis unreachable: {exc}") from None
        finally:
            writer.close()
        self.stdout.write(f"{opts['write']}: {writer.records} records in "
                          f"{writer.blocks} blocks")

    def record(self, client, keys, writer, hosts, filt, duration, until):
        """Live: until the duration, --until, Ctrl-C or SIGTERM; the file stays
        valid (the pending block is written on the way out)."""
        stopping = []
        previous = {s: signal.signal(s, lambda *_: stopping.append(1))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            record_live(client, keys, writer.write, hosts, filt, duration,
                        lambda: bool(stopping), until, flush=writer.flush)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def print_info(self, path):
        try:
            info = capture_summary(path)
        except CaptureError as exc:
            raise CommandError(str(exc)) from None

        def when(ts):
            return "-" if ts is None else datetime.datetime.fromtimestamp(
                ts, datetime.UTC).isoformat(timespec="seconds")

        span = (info["last"] - info["first"]) if info["first"] is not None else 0
        self.stdout.write(
            f"file     {path}\nversion  {info['version']}\n"
            f"source   {info['source'] or '-'}\n"
            f"hosts    {', '.join(info['hosts']) or '-'}\n"
            f"span     {when(info['first'])} .. {when(info['last'])} "
            f"({span:.0f} s)\n"
            f"records  {sum(info['records'].values())} ("
            + ", ".join(f"{n} {k}s" for k, n in sorted(info["records"].items()))
            + f") in {info['blocks']} blocks, {info['bytes']} bytes")
        for host, n in info["reports_per_host"].items():
            self.stdout.write(f"  {host}: {n} reports")
