"""App config for audit."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit app."""

    name = "callvault.audit"
    label = "audit"

    def ready(self) -> None:
        from callvault.audit.context import connect_task_signals

        # Background tasks record as "system: task <name>", their events under one id.
        connect_task_signals()
