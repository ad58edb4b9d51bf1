"""Keeping roles true as users come and change: a default role, staff in step;
and open map sockets told when a login may have ended."""

from __future__ import annotations

from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

from webapp.accounts.ended_logins import announce_ended_login
from webapp.accounts.roles import ADMIN, VIEWER, ensure_roles

# A save naming only other fields (a login's last_login) cannot end a login.
LOGIN_FIELDS = frozenset({"password", "is_active"})

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


def user_changed(sender, instance, created=False, raw=False, update_fields=None,
                 **kwargs):
    """A user saved (a new password, deactivated) or deleted: their sockets on
    every worker check their login now."""
    if created or raw:
        return
    if update_fields is not None and not LOGIN_FIELDS & set(update_fields):
        return
    announce_ended_login(instance.pk)


def session_logged_out(sender, request, user, **kwargs):
    """A logout: the sockets of that session close on every worker."""
    if user is not None and request.session.session_key:
        announce_ended_login(user.pk, request.session.session_key)


def roles_after_migrate(sender, **kwargs):
    """Permissions exist only once migrate is done: attach them then."""
    ensure_roles()


def connect(app_config) -> None:
    User = get_user_model()
    post_save.connect(default_role, sender=User, dispatch_uid="accounts.default_role")
    post_save.connect(user_changed, sender=User, dispatch_uid="accounts.user_changed")
    post_delete.connect(user_changed, sender=User,
                        dispatch_uid="accounts.user_deleted")
    user_logged_out.connect(session_logged_out, dispatch_uid="accounts.logged_out")
    m2m_changed.connect(sync_staff, sender=User.groups.through,
                        dispatch_uid="accounts.sync_staff")
    # Sent per app: ours comes after auth's and axes' (INSTALLED_APPS order),
    # whose permissions then exist.
    post_migrate.connect(roles_after_migrate, sender=app_config,
                         dispatch_uid="accounts.roles")
