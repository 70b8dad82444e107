"""Triggers that record writes to the accounts tables made outside the application
(callvault/audit/bypass.py)."""

from django.db import migrations

from callvault.audit import bypass

TABLES = ("accounts_project", "accounts_membership", "accounts_apikey", "accounts_user")


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


def uninstall(apps, schema_editor):
    bypass.uninstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_must_change_password"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
