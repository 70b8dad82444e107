"""SQLite: an event's insert claims the changes parked for its object (a trigger on the event
table instead of a DELETE after every event), and an order's edit that follows its event is
recognised and parks nothing (callvault/audit/parked.py, SQLITE_CLAIM_SQL and
_recorded_update)."""

from typing import Any

from django.db import migrations

from callvault.audit import bypass, parked


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(parked.SQLITE_CLAIM_SQL, params=None)
    tables = [spec.table for spec in bypass.AUDITED_TABLES if spec.recorded_updates]
    bypass.reinstall(schema_editor, *tables)


def uninstall(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {parked.SQLITE_CLAIM_TRIGGER}", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0009_recorded_updates")]

    operations = [migrations.RunPython(install, uninstall)]
