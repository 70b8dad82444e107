"""Devices remember when a batch of heartbeats was last accepted (the silence alert counts
from it). The column is bookkeeping: the device table's triggers are reinstalled to leave
it out (on SQLite they name every column), and existing devices start from "last seen"."""

from django.db import migrations, models
from django.db.models import F

from callvault.audit import bypass


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, "monitoring_device")


def uninstall(apps, schema_editor):
    # SQLite will not drop a column its triggers name: off first, back once it is gone.
    bypass.uninstall(schema_editor, "monitoring_device")


def backfill(apps, schema_editor):
    # Not a silence for every device at once after the upgrade: the best guess of the last
    # heartbeat is the last contact.
    Device = apps.get_model("monitoring", "Device")
    Device.objects.using(schema_editor.connection.alias).filter(
        last_heartbeat_at__isnull=True, last_seen_at__isnull=False
    ).update(last_heartbeat_at=F("last_seen_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_policies_and_triggers"),
    ]

    operations = [
        # Backwards this runs last, after the column is gone.
        migrations.RunPython(migrations.RunPython.noop, install),
        migrations.AddField(
            model_name="device",
            name="last_heartbeat_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last heartbeat"),
        ),
        migrations.RunPython(install, uninstall),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
