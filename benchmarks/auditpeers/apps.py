"""The peers' app: installed only by benchmarks.audit_settings, never by the product."""

from django.apps import AppConfig


class AuditPeersConfig(AppConfig):
    """Models recorded by django-simple-history, django-auditlog, django-pghistory and callvault."""

    name = "benchmarks.auditpeers"
    label = "auditpeers"
    default_auto_field = "django.db.models.BigAutoField"
