"""Cheaper bypass checks for the application's own writes (PostgreSQL).

Two changes that leave what is recorded as it was (docs/benchmarks.md, audit cost, "Where
the database's share goes"):

- the bypass function probes for the application's event before it sets up the diff, and
  looks up other projects only for the tables whose rows name none of their own (call tokens
  and users);
- the update trigger of a table with bookkeeping columns compares the row with NEW whose
  bookkeeping is put back to OLD's, instead of two `to_jsonb()` of the whole row.

Replace the function and reinstall those tables' triggers so existing installations use
both.
"""

from typing import Any

from django.db import migrations

from callvault.audit import bypass


def replace(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(bypass.PG_BYPASS_FUNCTION, params=None)
    tables = [spec.table for spec in bypass.AUDITED_TABLES if spec.ignored_columns]
    bypass.reinstall(schema_editor, *tables)


class Migration(migrations.Migration):
    # Every table whose triggers it reinstalls must exist with its current columns.
    dependencies = [
        ("audit", "0007_bypass_static_projects"),
        ("accounts", "0007_view_activity"),
        ("orders", "0006_hold_is_bookkeeping"),
        ("telephony", "0003_attested_spend"),
        ("monitoring", "0003_last_heartbeat"),
    ]

    operations = [migrations.RunPython(replace, migrations.RunPython.noop)]
