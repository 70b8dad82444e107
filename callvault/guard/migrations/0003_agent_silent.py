"""The "agent offline while working" alert (callvault/monitoring/silence.py): a new kind of
alert rule, and the rule for existing projects as a new project gets it
(guard.alerts.DEFAULT_ALERT_RULES).

The rows are the installation's own step, like the defaults of 0002: the bypass triggers of
the alert rules are lifted around them so they are not recorded as unattributed changes
(docs/audit-events.md, "Not recorded, on purpose"), and rebuilt afterwards (on SQLite the
AlterField may rebuild the table, which drops them).
"""

from django.db import migrations, models

from callvault.audit import bypass

TABLE = "guard_alertrule"
# Frozen copy of the rule as guard.alerts.DEFAULT_ALERT_RULES holds it: the agent silent
# for 10 minutes while the member did something in callvault within the last 10.
KIND, THRESHOLD, WINDOW = "agent_silent", 10, 10


def add_rules(apps, schema_editor):
    bypass.uninstall(schema_editor, TABLE)
    Project = apps.get_model("accounts", "Project")
    AlertRule = apps.get_model("guard", "AlertRule")
    db = schema_editor.connection.alias
    for project in Project.objects.using(db).all():
        AlertRule.objects.using(db).get_or_create(
            project=project,
            kind=KIND,
            defaults={"threshold": THRESHOLD, "window_minutes": WINDOW, "enabled": True},
        )
    bypass.reinstall(schema_editor, TABLE)


def remove_rules(apps, schema_editor):
    bypass.uninstall(schema_editor, TABLE)
    AlertRule = apps.get_model("guard", "AlertRule")
    AlertRule.objects.using(schema_editor.connection.alias).filter(kind=KIND).delete()
    bypass.reinstall(schema_editor, TABLE)


def reinstall(apps, schema_editor):
    bypass.reinstall(schema_editor, TABLE)


class Migration(migrations.Migration):
    dependencies = [
        ("guard", "0002_defaults_and_triggers"),
        ("audit", "0005_bypass_function"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertrule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("cards_burst", "Many order cards in a short time"),
                    ("reveals_burst", "Many numbers revealed in a short time"),
                    ("exports_burst", "Many exports in a short time"),
                    ("outside_hours", "Access outside working hours"),
                    ("anomaly", "Far above the member's usual pace"),
                    ("agent_silent", "Agent offline while working"),
                ],
                max_length=20,
                verbose_name="alert",
            ),
        ),
        migrations.RunPython(reinstall, reinstall),
        migrations.RunPython(add_rules, remove_rules),
    ]
