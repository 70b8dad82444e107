"""The order's hold (locked_by, locked_until) is bookkeeping for the bypass triggers: the
claim that sets it is recorded by the application, and watching it cost every claim a
deferred trigger (callvault/audit/bypass.py)."""

from django.db import migrations

from callvault.audit import bypass


def reinstall(apps, schema_editor):
    bypass.reinstall(schema_editor, "orders_order")


class Migration(migrations.Migration):
    dependencies = [("orders", "0005_bypass_triggers")]

    operations = [migrations.RunPython(reinstall, migrations.RunPython.noop)]
