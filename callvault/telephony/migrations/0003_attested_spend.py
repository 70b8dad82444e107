"""The token lookup's spend is attested by its own statement: the bypass triggers of call
tokens and calls drop that update at once instead of queuing a deferred call
(callvault/audit/bypass.py, ATTESTED_SETTING)."""

from django.db import migrations

from callvault.audit import bypass

TABLES = ("telephony_calltoken", "telephony_call")


def reinstall(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [("telephony", "0002_provider_secret_and_triggers")]

    operations = [migrations.RunPython(reinstall, migrations.RunPython.noop)]
