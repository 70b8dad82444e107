"""Template helpers for reading events: action and actor names, readable diffs."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from django import template

from callvault.audit.labels import Change, action_label, readable_changes, readable_details
from callvault.audit.models import ActorKind, AuditEvent

register = template.Library()


@register.filter
def action_name(action: str) -> Any:
    """ "Status changed" for "order.status"; the code itself when no app named it."""
    return action_label(action)


@register.filter
def actor_kind_name(kind: str) -> Any:
    """The actor kind's name ("API key", "Unattributed ...")."""
    try:
        return ActorKind(kind).label
    except ValueError:
        return kind


@register.simple_tag
def changes_of(event: AuditEvent, member: Any, zone: tzinfo | None = None) -> list[Change]:
    """The event's diff as rows; free text redacted unless the member may see numbers."""
    return readable_changes(
        event.object_type,
        event.changes or {},
        may_see_phones=bool(getattr(member, "can_see_phones", False)),
        zone=zone,
    )


@register.simple_tag
def details_of(event: AuditEvent, zone: tzinfo | None = None) -> list[tuple[str, str]]:
    """The event's details as (key, text) pairs (a dict's "items" key would shadow
    .items in a template)."""
    return readable_details(event.extra or {}, zone=zone)
