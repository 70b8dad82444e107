"""Existing projects get the leak controls a new project gets (callvault/guard/defaults.py),
and the guard's settings tables are watched for writes outside the application
(callvault/audit/bypass.py)."""

import datetime

from django.db import migrations

from callvault.audit import bypass

TABLES = ("guard_guardsettings", "guard_quotarule", "guard_alertrule", "guard_suspension")

# Frozen copies of guard.quotas.DEFAULT_QUOTAS and guard.alerts.DEFAULT_ALERT_RULES as they
# were when this migration was written.
QUOTAS = [
    ("card_open", "operator", 60),
    ("card_open", "trainee", 30),
    ("card_open", "supervisor", 300),
    ("reveal", "operator", 20),
    ("reveal", "trainee", 5),
    ("reveal", "supervisor", 50),
    ("call", "operator", 60),
    ("call", "trainee", 30),
    ("call", "supervisor", 60),
    ("search", "operator", 20),
    ("search", "trainee", 10),
    ("search", "supervisor", 200),
    ("api_read", "", 600),
]
ALERT_RULES = [
    ("cards_burst", 40, 10),
    ("reveals_burst", 10, 10),
    ("exports_burst", 3, 60),
    ("outside_hours", 1, 60),
    ("anomaly", 4, 60),
]

OFF_BY_DEFAULT = {"outside_hours"}


def defaults(apps, schema_editor):
    Project = apps.get_model("accounts", "Project")
    GuardSettings = apps.get_model("guard", "GuardSettings")
    QuotaRule = apps.get_model("guard", "QuotaRule")
    AlertRule = apps.get_model("guard", "AlertRule")
    for project in Project.objects.all():
        GuardSettings.objects.get_or_create(
            project=project,
            defaults={"work_starts": datetime.time(8, 0), "work_ends": datetime.time(21, 0)},
        )
        if not QuotaRule.objects.filter(project=project).exists():
            for kind, role, limit in QUOTAS:
                QuotaRule.objects.create(project=project, kind=kind, role=role, limit=limit)
        for kind, threshold, window in ALERT_RULES:
            AlertRule.objects.get_or_create(
                project=project,
                kind=kind,
                # Working hours are a guess until the owner sets them (night shifts).
                defaults={
                    "threshold": threshold,
                    "window_minutes": window,
                    "enabled": kind not in OFF_BY_DEFAULT,
                },
            )


def install(apps, schema_editor):
    bypass.reinstall(schema_editor, *TABLES)


def uninstall(apps, schema_editor):
    bypass.uninstall(schema_editor, *TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("guard", "0001_initial"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [
        migrations.RunPython(defaults, migrations.RunPython.noop),
        migrations.RunPython(install, uninstall),
    ]
