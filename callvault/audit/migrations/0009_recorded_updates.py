"""Order edits carry their events (PostgreSQL): the function that writes an UPDATE's event
from its statement's settings, and the triggers of orders_order that run it and spare the
deferred bypass call (callvault/audit/bypass.py, RECORDED_UPDATE_KEY)."""

from typing import Any

from django.db import migrations

from callvault.audit import bypass


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(bypass.PG_RECORDED_UPDATE_FUNCTION, params=None)
    tables = [spec.table for spec in bypass.AUDITED_TABLES if spec.recorded_updates]
    bypass.reinstall(schema_editor, *tables)


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_cheaper_bypass_checks")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
