"""`{% unread_notice_count project %}`: the settings menu's badge of unread security notices."""

from __future__ import annotations

from typing import Any

from django import template

from callvault.accounts.models import SecurityNotice

register = template.Library()


@register.simple_tag
def unread_notice_count(project: Any) -> int:
    """How many of the project's notices nobody has marked read (the menu shows it to
    owners only, so other members' pages never pay for the query)."""
    if project is None or getattr(project, "pk", None) is None:
        return 0
    return SecurityNotice.objects.filter(project_id=project.pk, read_at__isnull=True).count()
