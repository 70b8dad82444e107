"""The wider phone pattern in the database's own redaction (PostgreSQL).

`callvault_audit_redact`, which blanks phone-shaped runs in the text of unattributed events,
is created by 0005 from the pattern of `callvault/vault/logfilter.py` as it was then. The
pattern now also treats slashes, underscores, typographic dashes and thin or no-break spaces
as separators: replace the function so existing installations use it too.
"""

from typing import Any

from django.db import migrations

from callvault.audit import bypass


def replace_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(bypass.PG_REDACT_FUNCTION, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_bypass_function")]

    operations = [migrations.RunPython(replace_function, migrations.RunPython.noop)]
