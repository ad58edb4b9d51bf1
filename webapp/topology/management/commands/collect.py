"""``manage.py collect``: an alias of ``python -m collector`` (collector.runner)."""

import os

from django.core.management.base import BaseCommand, CommandError

from collector.runner import DESCRIPTION, add_arguments, run
from collector.settings import SettingsError, settings_from_env


class Command(BaseCommand):
    help = DESCRIPTION + " Same as `python -m collector`."

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **opts):
        try:
            run(settings_from_env(os.environ), duration=opts["duration"],
                interval=opts["interval"], fallback=opts["fallback"],
                ebpf_dump=opts["ebpf_dump"], out=self.stdout, err=self.stderr)
        except SettingsError as exc:
            raise CommandError(str(exc)) from None
