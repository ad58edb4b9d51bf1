"""``manage.py ensureadmin``: make sure a login exists, for `make run`."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Create the admin login if missing: password from PORTOLAN_ADMIN_PASSWORD, "
            "else generated and printed once.")

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get(
            "PORTOLAN_ADMIN_USER", "admin"))

    def handle(self, *args, **opts):
        User = get_user_model()
        username = opts["username"]
        password = os.environ.get("PORTOLAN_ADMIN_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"login {username!r}: password set from "
                                  "PORTOLAN_ADMIN_PASSWORD")
            else:
                self.stdout.write(f"login {username!r} exists (password unchanged)")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(f"created login {username!r} with password: {password}\n"
                              "(shown once; set PORTOLAN_ADMIN_PASSWORD to choose one)")
        else:
            self.stdout.write(f"created login {username!r} (password from "
                              "PORTOLAN_ADMIN_PASSWORD)")
