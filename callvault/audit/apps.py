"""App config for audit."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit app."""

    name = "callvault.audit"
    label = "audit"
