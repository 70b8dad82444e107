"""Helpers the audit viewer tests share: events written as a given member from an address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django.utils import timezone

from callvault.accounts.models import Membership
from callvault.audit.context import AuditContext, use_context
from callvault.audit.middleware import member_actor
from callvault.audit.models import ActorKind, AuditEvent
from callvault.orders.tests.support import HttpsClient

SEARCH = "/p/{slug}/audit/"
EXPORT = "/p/{slug}/audit/export.csv"
TIMELINE = "/p/{slug}/audit/timeline/{user_id}/"


@contextmanager
def acting(
    member: Membership, ip: str = "203.0.113.7", ua: str = "TestBrowser/1"
) -> Iterator[None]:
    """Run actions as the member, from the address, as the middleware would record them."""
    with use_context(AuditContext(member_actor(member.user), ip, ua, "req-test-0001")):
        yield


def event(project_id: int | None, **fields: Any) -> AuditEvent:
    """An event written directly, with chosen time and address (defaults: a member's view)."""
    values: dict[str, Any] = {
        "created_at": timezone.now(),
        "project_id": project_id,
        "actor_kind": ActorKind.MEMBER,
        "actor_id": "1",
        "actor_name": "someone",
        "action": "order.view",
        "object_type": "order",
        "object_id": "1",
        "ip": "198.51.100.1",
    }
    values.update(fields)
    return AuditEvent.objects.create(**values)


def english(member: Membership) -> HttpsClient:
    """A client logged in as the member, reading pages in English."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    return client


def at(text: str) -> datetime:
    """An aware moment from ISO text."""
    return datetime.fromisoformat(text)


def ahead(zone: tzinfo, days: int = 100) -> tuple[date, datetime]:
    """A day well after the fixtures' events, and its midnight in the zone.

    On PostgreSQL a time filter also bounds ids, trusting that events are inserted in
    time order (give or take queries.INSERT_DELAY), as the product writes them; tests
    that write events with chosen times keep to that: later than everything the fixtures
    recorded, and in time order.
    """
    day = (timezone.now() + timedelta(days=days)).date()
    return day, datetime.combine(day, time.min, tzinfo=zone)
