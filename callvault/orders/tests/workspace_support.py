"""What the workspace tests share: addresses, whole-day calling hours, claimed orders, and a
fingerprint of an order to show that a refused request changed nothing."""

from __future__ import annotations

from datetime import time
from typing import Any

from django.urls import reverse

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Comment, Order, OrderItem, WorkSettings
from callvault.orders.queue import claim_next
from callvault.orders.tests.support import HttpsClient

# The card's write endpoints, by URL name, with a POST body that would be valid.
WRITES: dict[str, dict[str, Any]] = {
    "update": {"customer_name": "Someone", "address": "Elsewhere", "version": 1},
    "item_add": {"product": "GIFT", "quantity": 1},  # the product id is filled in per test
    "status": {"status": "accepted", "version": 1},  # the status id is filled in per test
    "callback": {"when": "2099-01-01T10:00", "version": 1},
    "no_answer": {"version": 1},
    "release": {},
    "comment": {"text": "hello"},
    "call": {},
}


def login(member: Membership) -> HttpsClient:
    """A client logged in as the member, reading the pages in English (the source strings,
    whatever state the Russian catalogue is in)."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    return client


def url(name: str, *args: Any, slug: str = "alpha") -> str:
    """An orders page under the project."""
    return reverse(f"orders:{name}", args=[slug, *args])


def card_url(order: Order, slug: str = "alpha") -> str:
    return url("card", order.pk, slug=slug)


def whole_day(project: Project) -> None:
    """Calling hours around the clock, so claims do not depend on when the tests run."""
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=time(0, 0), calling_hours_end=time(23, 59, 59)
    )


def new_order(project: Project, phone: str, name: str = "Ivan Petrov") -> Order:
    """An order with two teas, as a landing page would send it."""
    lead = Lead(phone=phone, name=name, address="Moscow", items=[LeadItem("TEA", 2)])
    return do_create_order(project, lead).order


def claimed(member: Membership) -> Order:
    """The next order, claimed by the member."""
    order = claim_next(member)
    assert order is not None
    return order


def fingerprint(order: Order) -> dict[str, Any]:
    """Everything about an order a write could change, to compare before and after."""
    fresh = Order.objects.get(pk=order.pk)
    return {
        "fields": {
            name: getattr(fresh, name)
            for name in (
                "customer_name",
                "address",
                "status_id",
                "next_call_at",
                "attempts",
                "assigned_to_id",
                "locked_by_id",
                "locked_until",
                "version",
            )
        },
        "items": list(OrderItem.objects.filter(order=order).values_list("id", "quantity")),
        "comments": Comment.objects.filter(order=order).count(),
        "events": AuditEvent.objects.exclude(action__in=["order.view", "audit.view"]).count(),
    }


def write_body(name: str, order: Order) -> dict[str, Any]:
    """A valid body for the named write endpoint on this order."""
    body = dict(WRITES[name])
    if name == "item_add":
        body["product"] = order.project.products.get(sku="GIFT").pk
    if name == "status":
        body["status"] = order.project.statuses.get(code="accepted").pk
    if "version" in body:
        body["version"] = Order.objects.get(pk=order.pk).version
    return body
