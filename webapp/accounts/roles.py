"""The two roles as Django groups: which permissions each holds, one place.

A viewer sees the map and the APIs and manages their own tokens; an admin
also manages users and everyone's tokens and reads the login log (Django's
admin site, which asks for ``is_staff``: kept in step with the admin group).
"""

from __future__ import annotations

__all__ = ["ADMIN", "ROLES", "VIEWER", "ensure_roles", "role_of", "set_role"]

VIEWER = "viewer"
ADMIN = "admin"
_VIEWER_PERMS = ["accounts.view_topology", "accounts.add_apitoken"]
ROLES: dict[str, list[str]] = {
    VIEWER: _VIEWER_PERMS,
    ADMIN: [
        *_VIEWER_PERMS,
        "auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user",
        "auth.view_group",
        "accounts.view_apitoken", "accounts.delete_apitoken",
        # The login log (django-axes): attempts and lockouts; deleting an
        # attempt lifts its lockout.
        "axes.view_accessattempt", "axes.delete_accessattempt",
        "axes.view_accesslog", "axes.view_accessfailurelog",
    ],
}


def ensure_roles() -> None:
    """Create the groups and give each exactly its permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(Permission.objects.filter(
                content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def set_role(user, role: str) -> None:
    """Make ``user`` exactly a ``role`` (its group; staff only as an admin)."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    user.groups.set([Group.objects.get(name=role)])
    # groups.set() already keeps is_staff in step (signals.sync_staff).


def role_of(user) -> str:
    """The strongest role ``user`` holds ('' for none)."""
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    return next((r for r in (ADMIN, VIEWER) if r in names), "")
