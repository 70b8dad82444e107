"""The bypass function without a per-call EXECUTE for the tables in use (PostgreSQL).

`callvault_audit_bypass` found the projects of a row that names none of its own (a call
token: its call's; a user: its memberships') with a dynamic EXECUTE, which PostgreSQL plans
on every call: most of the trigger's time on the token lookup's hot path. It now reads the
two sources in use with static statements (plpgsql keeps their plans) and probes those
projects first. Replace the function so existing installations use it too.
"""

from typing import Any

from django.db import migrations

from callvault.audit import bypass


def replace_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(bypass.PG_BYPASS_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_wider_phone_pattern")]

    operations = [migrations.RunPython(replace_function, migrations.RunPython.noop)]
