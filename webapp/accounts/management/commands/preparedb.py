"""``manage.py preparedb``: migrate, then ensureadmin, one process at a time."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from webapp.accounts.db_lock import database_lock


class Command(BaseCommand):
    help = ("Apply the migrations and make sure the admin login exists, holding a "
            "lock on the database (PostgreSQL), so that web replicas starting "
            "together on one shared database do it one after another.")

    def handle(self, *args, **opts):
        with database_lock(connection) as waited:
            if waited:
                self.stdout.write("waited for another process preparing the database")
            call_command("migrate", interactive=False, verbosity=opts["verbosity"])
            call_command("ensureadmin", verbosity=opts["verbosity"])
