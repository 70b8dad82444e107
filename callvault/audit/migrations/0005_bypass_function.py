"""The shared PostgreSQL function the bypass triggers of the domain tables run (see bypass.py).

SQLite needs no function: its triggers are plain SQL and are installed with their tables'
migrations in the domain apps.
"""

from django.db import migrations

from callvault.audit import bypass


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in bypass.PG_FUNCTIONS:
            schema_editor.execute(statement, params=None)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in bypass.PG_DROP_FUNCTIONS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain")]

    operations = [migrations.RunPython(create_functions, drop_functions, elidable=False)]
