"""One sealed column for the provider's secret (key rotation re-seals one named column per
table), and the telephony tables watched for writes outside the application
(callvault/audit/bypass.py)."""

from django.db import migrations

from callvault.audit import bypass

TABLES = (
    "telephony_telephonysettings",
    "telephony_pbx",
    "telephony_sipaccount",
    "telephony_call",
    "telephony_calltoken",
    "telephony_recording",
    "telephony_callreview",
)


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


def uninstall(apps, schema_editor):
    bypass.uninstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("telephony", "0001_initial"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [
        migrations.RenameField(
            model_name="telephonysettings",
            old_name="ami_secret_sealed",
            new_name="secret_sealed",
        ),
        migrations.RemoveField(
            model_name="telephonysettings",
            name="cloud_secret_sealed",
        ),
        migrations.RunPython(install, uninstall),
    ]
