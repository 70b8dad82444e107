"""Existing projects get the monitoring policy a new project gets (monitoring/defaults.py),
and the policy, enrolment code and device tables are watched for writes outside the
application (callvault/audit/bypass.py)."""

from django.db import migrations

from callvault.audit import bypass

TABLES = ("monitoring_monitoringpolicy", "monitoring_enrolmentcode", "monitoring_device")


def policies(apps, schema_editor):
    # The model's defaults as they were when this migration was written: nothing is
    # collected until a device of the project is enrolled.
    Project = apps.get_model("accounts", "Project")
    MonitoringPolicy = apps.get_model("monitoring", "MonitoringPolicy")
    db = schema_editor.connection.alias
    for project in Project.objects.using(db).all():
        MonitoringPolicy.objects.using(db).get_or_create(project=project)


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


def uninstall(apps, schema_editor):
    bypass.uninstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [
        migrations.RunPython(policies, migrations.RunPython.noop),
        migrations.RunPython(install, uninstall),
    ]
