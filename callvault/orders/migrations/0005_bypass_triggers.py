"""Triggers that record writes to the orders tables made outside the application
(callvault/audit/bypass.py)."""

from django.db import migrations

from callvault.audit import bypass

TABLES = (
    "orders_order",
    "orders_orderitem",
    "orders_comment",
    "orders_status",
    "orders_product",
    "orders_worksettings",
)


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


def uninstall(apps, schema_editor):
    bypass.uninstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_fewer_indexes"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
