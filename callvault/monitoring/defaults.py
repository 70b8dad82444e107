"""A new project's monitoring policy, recorded, made in the transaction that creates the
project (existing projects got theirs from migration 0002)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from callvault.accounts.models import Project


@receiver(post_save, sender=Project, dispatch_uid="callvault.monitoring.defaults")
def on_project_created(sender: Any, instance: Project, created: bool, **kwargs: Any) -> None:
    """Give every new project its monitoring policy (it collects nothing until a device of
    the project is enrolled)."""
    if not created or kwargs.get("raw"):
        return
    from callvault.monitoring.policy import create_default_policy

    create_default_policy(instance)
