"""A new project's leak controls: its settings row, the role quotas and the alert rules,
each recorded, made in the transaction that creates the project."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from callvault.accounts.models import Project


@receiver(post_save, sender=Project, dispatch_uid="callvault.guard.defaults")
def on_project_created(sender: Any, instance: Project, created: bool, **kwargs: Any) -> None:
    """Give every new project its leak controls (existing ones got them by migration)."""
    if not created or kwargs.get("raw"):
        return
    from callvault.guard import alerts, quotas

    quotas.create_default_settings(instance)
    quotas.create_default_quotas(instance)
    alerts.create_default_alert_rules(instance)
