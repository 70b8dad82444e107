"""API endpoints for reading the record: the key's project only, newest first by id.

Only keys with their own "may read the audit trail" flag: the record names operators and
their addresses, more than an order integration needs. Reads through the API are recorded
like those on pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from ninja.errors import HttpError

from callvault.accounts.models import ApiKey
from callvault.audit.labels import action_label, readable_changes
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.queries import (
    EventFilter,
    EventPage,
    events_for_object,
    page_of,
    parse_ip_filter,
    search,
)
from callvault.audit.recorder import record_event
from callvault.guard.middleware import api_quota_refusal

router = Router(tags=["audit"])


class ChangeOut(Schema):
    """One field's before -> after; a sealed field only says that it changed."""

    field: str
    label: str
    before: str | None
    after: str | None
    hidden: bool


class EventOut(Schema):
    """An audit event; free text in changes has phone-shaped digits blanked."""

    id: int
    created_at: datetime
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    action_name: str
    object_type: str
    object_id: str
    object_repr: str
    changes: list[ChangeOut]
    extra: dict[str, Any]
    ip: str | None
    user_agent: str
    request_id: str


class EventPageOut(Schema):
    """A page of events and the cursor of the next (older) one: pass it back as `before`."""

    items: list[EventOut]
    next_before: int | None


class ErrorOut(Schema):
    """An error answer."""

    detail: Any


def may_read_audit(key: ApiKey) -> bool:
    """Whether the key may read its project's record (see the module docstring)."""
    return bool(key.can_read_audit)


def _auditor_key(request: HttpRequest) -> ApiKey:
    key: ApiKey = request.api_key  # type: ignore[attr-defined]
    if not may_read_audit(key):
        raise HttpError(403, "this API key may not read the audit trail")
    return key


def _event_out(event: AuditEvent) -> EventOut:
    changes = readable_changes(event.object_type, event.changes or {}, may_see_phones=False)
    return EventOut(
        id=event.pk,
        created_at=event.created_at,
        actor_kind=event.actor_kind,
        actor_id=event.actor_id,
        actor_name=event.actor_name,
        action=event.action,
        action_name=str(action_label(event.action)),
        object_type=event.object_type,
        object_id=event.object_id,
        object_repr=event.object_repr,
        changes=[
            ChangeOut(
                field=c.field,
                label=c.label,
                before=None if c.hidden else c.before,
                after=None if c.hidden else c.after,
                hidden=c.hidden,
            )
            for c in changes
        ],
        extra=event.extra or {},
        ip=event.ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
    )


def _page_out(page: EventPage) -> EventPageOut:
    return EventPageOut(items=[_event_out(e) for e in page.rows], next_before=page.next_before)


@router.get(
    "/audit/events",
    response={200: EventPageOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="Search the audit trail",
    description="The key's project only, newest first, 1-200 a page. `action` ending in `.` "
    "is a prefix (`order.`); `ip` is an address or a network (`10.0.0.0/8`, `2001:db8::/32`); "
    "`member` is a user id. Pass `next_before` back as `before` for the next page.",
)
def list_events(
    request: HttpRequest,
    member: int | None = None,
    actor_kind: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    ip: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> EventPageOut | HttpResponse:
    key = _auditor_key(request)
    if (refused := api_quota_refusal(key)) is not None:
        return refused
    for name, value in {"actor_kind": actor_kind, "action": action, "ip": ip}.items():
        if len(value) > 64:
            raise HttpError(422, f"{name}: at most 64 characters")
    ip_filter = parse_ip_filter(ip) if ip else None
    if ip and ip_filter is None:
        raise HttpError(422, "ip: an address or a network such as 10.0.0.0/8")
    if actor_kind and actor_kind not in ActorKind.values:
        raise HttpError(422, f"actor_kind: one of {', '.join(ActorKind.values)}")
    event_filter = EventFilter(
        actor_kind=ActorKind.MEMBER if member is not None else actor_kind,
        actor_id=str(member) if member is not None else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        ip=ip_filter,
        since=since,
        until=until,
    )
    page = page_of(search(key.project_id, event_filter), before, max(1, min(limit, 200)))
    record_event(
        "audit.search",
        project_id=key.project_id,
        extra={"filters": event_filter.as_record(), "before": before, "results": len(page.rows)},
    )
    return _page_out(page)


@router.get(
    "/audit/orders/{order_id}/history",
    response={200: EventPageOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut},
    summary="An order's history",
    description="Every change and read recorded against the order, newest first, 1-200 a page.",
)
def order_history(
    request: HttpRequest, order_id: int, before: int | None = None, limit: int = 100
) -> EventPageOut | HttpResponse:
    key = _auditor_key(request)
    if (refused := api_quota_refusal(key)) is not None:
        return refused
    page = events_for_object(
        key.project_id, "order", order_id, before=before, size=max(1, min(limit, 200))
    )
    if not page.rows and before is None:
        # Every order has at least its creation recorded: no events means no such order
        # in this key's project (another project's order answers the same).
        raise HttpError(404, "no such order")
    record_event(
        "audit.view",
        project_id=key.project_id,
        object_type="order",
        object_id=order_id,
        extra={"page": "order_history", "before": before, "results": len(page.rows)},
    )
    return _page_out(page)
