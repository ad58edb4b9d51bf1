"""The viewer and admin groups; every login that existed before roles keeps
what it could do (superusers become admins, the others viewers). The groups'
permissions are attached after migrate (``signals.roles_after_migrate``)."""

from django.db import migrations


def make_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    viewer, _ = Group.objects.get_or_create(name="viewer")
    admin, _ = Group.objects.get_or_create(name="admin")
    for user in User.objects.filter(groups=None):
        user.groups.add(admin if user.is_superuser else viewer)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(make_roles, migrations.RunPython.noop)]
