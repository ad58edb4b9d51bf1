"""Keeping roles true as users come and change: a default role, staff in step."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_migrate, post_save

from webapp.accounts.roles import ADMIN, VIEWER, ensure_roles

__all__ = ["connect"]


def default_role(sender, instance, created, raw=False, **kwargs):
    """A new user is a viewer (a new superuser, an admin) until told otherwise."""
    if not created or raw:
        return
    from django.contrib.auth.models import Group

    group = Group.objects.filter(name=ADMIN if instance.is_superuser else VIEWER)
    instance.groups.add(*group)


def sync_staff(sender, instance, action, reverse, **kwargs):
    """Admins reach Django's admin site, nobody else (superusers always)."""
    if reverse or action not in ("post_add", "post_remove", "post_clear"):
        return
    staff = instance.is_superuser or instance.groups.filter(name=ADMIN).exists()
    if instance.is_staff != staff:
        instance.is_staff = staff
        instance.save(update_fields=["is_staff"])


def roles_after_migrate(sender, **kwargs):
    """Permissions exist only once migrate is done: attach them then."""
    ensure_roles()


def connect(app_config) -> None:
    User = get_user_model()
    post_save.connect(default_role, sender=User, dispatch_uid="accounts.default_role")
    m2m_changed.connect(sync_staff, sender=User.groups.through,
                        dispatch_uid="accounts.sync_staff")
    # Sent per app: ours comes after auth's and axes' (INSTALLED_APPS order),
    # whose permissions then exist.
    post_migrate.connect(roles_after_migrate, sender=app_config,
                         dispatch_uid="accounts.roles")
