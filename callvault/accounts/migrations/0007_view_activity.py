"""The "view activity" capability (monitoring): members whose role presets it get it.

Owners, admins and supervisors get the flag as their role's preset would have given it. The
grant is the installation's own step, like the defaults of 0005: the bypass triggers of the
membership table are lifted around it (and rebuilt for the new column on SQLite), so it is
not recorded as an unattributed change (docs/audit-events.md, "Not recorded, on purpose").
"""

from typing import Any

from django.db import migrations, models

from callvault.audit import bypass

PRESET_ROLES = ("owner", "admin", "supervisor")


def grant(apps: Any, schema_editor: Any) -> None:
    bypass.uninstall(schema_editor, "accounts_membership")
    membership = apps.get_model("accounts", "Membership")
    membership.objects.using(schema_editor.connection.alias).filter(
        role__in=PRESET_ROLES
    ).update(can_view_activity=True)
    bypass.reinstall(schema_editor, "accounts_membership")


def reinstall(apps: Any, schema_editor: Any) -> None:
    bypass.reinstall(schema_editor, "accounts_membership")


def uninstall(apps: Any, schema_editor: Any) -> None:
    bypass.uninstall(schema_editor, "accounts_membership")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_notice_user"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [
        # Backwards this runs last, after the column is gone (SQLite's triggers name columns).
        migrations.RunPython(migrations.RunPython.noop, reinstall),
        migrations.AddField(
            model_name="membership",
            name="can_view_activity",
            field=models.BooleanField(
                default=False, verbose_name="May view operators' activity and screenshots"
            ),
        ),
        migrations.RunPython(grant, uninstall),
    ]
