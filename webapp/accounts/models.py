"""The stored side of API tokens: a name, an owner and a digest, never the token."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.accounts.tokens import MAX_LENGTH, PREFIX, token_digest

# last_used is a hint for the owner, not an audit: written at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiToken(models.Model):
    """A named, read-only token; the token itself was shown once, at creation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=20, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"
        constraints = [
            models.UniqueConstraint(fields=["user", "name"],
                                    name="token_name_per_user"),
        ]
        # The one permission every role's pages and APIs ask for: Django
        # attaches permissions to a model, and this is the app's only one.
        permissions = [("view_topology", "Can see the map and read the graph APIs")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def user_for(cls, token: str):
        """The active owner of ``token``, or None (unknown, revoked, inactive)."""
        if not token.startswith(PREFIX) or len(token) > MAX_LENGTH:
            return None
        found = (cls.objects.select_related("user")
                 .filter(digest=token_digest(token)).first())
        if found is None or not found.user.is_active:
            return None
        now = timezone.now()
        if found.last_used is None or now - found.last_used > LAST_USED_RESOLUTION:
            cls.objects.filter(pk=found.pk).update(last_used=now)
        return found.user
