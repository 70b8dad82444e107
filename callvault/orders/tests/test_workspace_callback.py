"""Callbacks on the customer's clock, "No answer", and "Return to queue" from the card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order, do_update_order
from callvault.orders.models import Order
from callvault.orders.tests.workspace_support import (
    card_url,
    claimed,
    fingerprint,
    login,
    new_order,
    url,
    whole_day,
)

Phone = tuple[str, str]
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")  # UTC+10 all year; the project is in Moscow (+3)


@pytest.fixture(autouse=True)
def always_calling_hours(project: Project) -> None:
    whole_day(project)


@pytest.fixture
def held(operator: Membership, order: Order) -> Order:
    """The order of a customer in Vladivostok, handed to the operator by the queue."""
    Order.objects.filter(pk=order.pk).update(customer_tz="Asia/Vladivostok")
    return claimed(operator)


def tomorrow_at(zone: ZoneInfo, hour: int, minute: int) -> datetime:
    return (timezone.now().astimezone(zone) + timedelta(days=1)).replace(
        hour=hour, minute=minute, second=0, microsecond=0
    )


def post_callback(member: Membership, order: Order, when: str, **extra: object):
    body = {"when": when, "version": order.version, **extra}
    return login(member).post(url("callback", order.pk), body)


def test_the_callback_is_the_time_the_customer_named_on_their_own_clock(
    operator: Membership, held: Order
) -> None:
    local = tomorrow_at(VLADIVOSTOK, 15, 30)
    response = post_callback(operator, held, local.strftime("%Y-%m-%dT%H:%M"))
    assert response.status_code == 302 and response["Location"] == url("mine")
    saved = Order.objects.get(pk=held.pk)
    assert saved.next_call_at == local.astimezone(UTC)
    assert saved.next_call_at.astimezone(VLADIVOSTOK).strftime("%H:%M") == "15:30"
    assert (saved.status.code, saved.assigned_to, saved.locked_by) == (
        "callback",
        operator.user,
        None,
    )
    event = AuditEvent.objects.get(action="order.callback")
    assert event.changes["next_call_at"][1] == local.astimezone(UTC).isoformat()
    assert event.changes["status"] == ["new", "callback"]


def test_my_orders_shows_the_callback_on_both_clocks(operator: Membership, held: Order) -> None:
    local = tomorrow_at(VLADIVOSTOK, 15, 30)
    body = {"when": local.strftime("%Y-%m-%dT%H:%M"), "version": held.version}
    page = login(operator).post(url("callback", held.pk), body, follow=True).content.decode()
    assert "3:30 p.m. (Asia/Vladivostok)" in page  # the message, customer's clock
    assert "8:30 a.m. (Europe/Moscow)" in page  # and the operator's
    assert "3:30 p.m." in page.split("<tbody>")[1]  # the row


def test_without_a_known_zone_the_projects_zone_is_the_customers(
    operator: Membership, held: Order
) -> None:
    Order.objects.filter(pk=held.pk).update(customer_tz="")
    moscow = ZoneInfo("Europe/Moscow")
    local = tomorrow_at(moscow, 11, 0)
    post_callback(operator, Order.objects.get(pk=held.pk), local.strftime("%Y-%m-%dT%H:%M"))
    assert Order.objects.get(pk=held.pk).next_call_at == local.astimezone(UTC)


@pytest.mark.parametrize("when", ["2030-13-45T25:00", "tomorrow", "", "15:30"])
def test_a_date_that_is_not_one_is_refused_naming_the_field(
    operator: Membership, held: Order, when: str
) -> None:
    before = fingerprint(held)
    response = post_callback(operator, held, when)
    assert response.status_code == 200
    assert "when" in response.context["callback_form"].errors
    assert "Call back at: " in response.content.decode()
    assert fingerprint(held) == before


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (timedelta(minutes=-10), "The callback time must be in the future."),
        (timedelta(days=120), "At most 90 days ahead."),
    ],
)
def test_a_time_in_the_past_or_too_far_ahead_is_refused(
    operator: Membership, held: Order, offset: timedelta, message: str
) -> None:
    before = fingerprint(held)
    local = (timezone.now() + offset).astimezone(VLADIVOSTOK)
    response = post_callback(operator, held, local.strftime("%Y-%m-%dT%H:%M"))
    assert f"Call back at: {message}" in response.content.decode()
    assert fingerprint(held) == before


def test_a_time_the_clock_change_skips_is_refused(operator: Membership, held: Order) -> None:
    # 02:30 on 10 March 2030 does not exist in New York (clocks jump from 2:00 to 3:00).
    Order.objects.filter(pk=held.pk).update(customer_tz="America/New_York")
    before = fingerprint(held)
    response = post_callback(operator, Order.objects.get(pk=held.pk), "2030-03-10T02:30")
    assert "when" in response.context["callback_form"].errors
    assert "America/New_York" in str(response.context["callback_form"].errors["when"])
    assert fingerprint(held) == before


def test_a_stale_page_cannot_schedule_over_a_newer_save(operator: Membership, held: Order) -> None:
    seen = Order.objects.get(pk=held.pk)
    do_update_order(Order.objects.get(pk=held.pk), {"address": "Changed meanwhile"})
    before = fingerprint(held)
    local = tomorrow_at(VLADIVOSTOK, 15, 30)
    response = post_callback(operator, seen, local.strftime("%Y-%m-%dT%H:%M"))
    assert "Someone else changed this order; reload it." in response.content.decode()
    assert fingerprint(held) == before


def test_no_answer_counts_the_attempt_and_goes_back_to_my_orders(
    operator: Membership, held: Order
) -> None:
    response = login(operator).post(url("no_answer", held.pk), {"version": held.version})
    assert response.status_code == 302 and response["Location"] == url("mine")
    saved = Order.objects.get(pk=held.pk)
    assert (saved.attempts, saved.status.code, saved.locked_by) == (1, "no_answer", None)
    assert saved.next_call_at is not None and saved.next_call_at > timezone.now()
    event = AuditEvent.objects.get(action="order.no_answer")
    assert event.changes["attempts"] == [0, 1]
    assert event.changes["status"] == ["new", "no_answer"]


def test_no_answer_and_next_opens_the_next_order(
    operator: Membership, held: Order, project: Project, phone: Phone
) -> None:
    following = new_order(project, phone[0], name="Next customer")
    response = login(operator).post(
        url("no_answer", held.pk), {"version": held.version, "then": "next"}
    )
    assert response["Location"] == card_url(following)


def test_no_answer_on_a_stale_page_counts_nothing(operator: Membership, held: Order) -> None:
    before = fingerprint(held)
    response = login(operator).post(url("no_answer", held.pk), {"version": held.version + 5})
    assert "Someone else changed this order; reload it." in response.content.decode()
    assert fingerprint(held) == before


def test_return_to_queue_gives_the_order_back(operator: Membership, held: Order) -> None:
    response = login(operator).post(url("release", held.pk))
    assert response.status_code == 302 and response["Location"] == url("mine")
    saved = Order.objects.get(pk=held.pk)
    assert (saved.locked_by, saved.locked_until, saved.in_queue) == (None, None, True)
    event = AuditEvent.objects.get(action="order.release")
    assert event.changes == {"locked_by": ["bob", None]}


def test_return_to_queue_of_an_order_not_held_changes_nothing(
    operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    before = fingerprint(order)
    response = login(operator).post(url("release", order.pk), follow=True)
    assert "This order is not held by you." in response.content.decode()
    assert fingerprint(order) == before
