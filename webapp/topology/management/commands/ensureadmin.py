"""``manage.py ensureadmin``: make sure a login exists, for `make run`."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.settings import write_private


class Command(BaseCommand):
    help = ("Create the admin login if missing: password from PORTOLAN_ADMIN_PASSWORD, "
            "else generated into var/admin_password (readable by its owner only). "
            "An existing login's password is left alone unless --reset-password.")

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get(
            "PORTOLAN_ADMIN_USER", "admin"))
        parser.add_argument(
            "--reset-password", action="store_true",
            help="Also set an existing login's password from PORTOLAN_ADMIN_PASSWORD.")

    def handle(self, *args, **opts):
        User = get_user_model()
        username = opts["username"]
        password = os.environ.get("PORTOLAN_ADMIN_PASSWORD")
        weak = self._weakness(password) if password else ""
        user = User.objects.filter(username=username).first()
        if user is not None:
            if opts["reset_password"]:
                self._reset_password(user, password, weak)
            elif password and weak:
                # An install that already runs keeps starting: its login stays.
                self.stderr.write(f"PORTOLAN_ADMIN_PASSWORD is too weak ({weak}); "
                                  f"login {username!r} keeps its password")
            else:
                # Never set again at a start: the admin may have changed it.
                self.stdout.write(f"login {username!r} exists (password unchanged)")
            return
        if weak:
            raise CommandError(f"PORTOLAN_ADMIN_PASSWORD is too weak: {weak}")
        if password:
            User.objects.create_superuser(username=username, email="",
                                          password=password)
            self.stdout.write(f"created login {username!r} (password from "
                              "PORTOLAN_ADMIN_PASSWORD)")
            return
        # Generated: into a file only its owner reads, never into a log.
        path = settings.VAR_DIR / "admin_password"
        path.unlink(missing_ok=True)
        password = secrets.token_urlsafe(12)
        write_private(path, password + "\n")
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"created login {username!r}; its password is in {path} "
                          "(set PORTOLAN_ADMIN_PASSWORD to choose one)")

    def _reset_password(self, user, password: str | None, weak: str) -> None:
        """Set ``user``'s password from PORTOLAN_ADMIN_PASSWORD, as asked."""
        if not password:
            raise CommandError("--reset-password needs PORTOLAN_ADMIN_PASSWORD")
        if weak:
            raise CommandError(f"PORTOLAN_ADMIN_PASSWORD is too weak: {weak}")
        if user.check_password(password):
            # Not hashed again: a new hash (new salt) would end every session
            # of this login on every worker sharing the database.
            self.stdout.write(f"login {user.username!r}: password unchanged")
            return
        user.set_password(password)
        user.save(update_fields=["password"])
        self.stdout.write(f"login {user.username!r}: password set from "
                          "PORTOLAN_ADMIN_PASSWORD")

    @staticmethod
    def _weakness(password: str) -> str:
        """Why ``password`` fails the rules a password set in the app meets
        (empty if it passes)."""
        try:
            password_validation.validate_password(password)
        except ValidationError as exc:
            return " ".join(exc.messages)
        return ""
