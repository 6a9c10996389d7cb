"""The product's roles as groups with their permissions (``dashboard/roles.py``).

Assign users to a group in the admin. A user with a partner sees only that partner's tickets,
whatever the role; only admins need staff status (the Django admin).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from dashboard.roles import ROLES, ensure_roles

def create_roles(apps, schema_editor):
    # Permissions are normally created after migrate; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("dashboard", "0002_board_display_timezone"),
        ("policies", "0007_rescues"),
        ("tickets", "0006_take_over_permission"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
