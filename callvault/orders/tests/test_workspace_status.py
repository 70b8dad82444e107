"""Setting the outcome of a call as a status: reasons, foreign ids, stale pages, save and next."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_update_order
from callvault.orders.models import Order, Status, StatusChange
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


@pytest.fixture(autouse=True)
def always_calling_hours(project: Project) -> None:
    whole_day(project)


@pytest.fixture
def held(operator: Membership, order: Order) -> Order:
    """The order, handed to the operator by the queue."""
    return claimed(operator)


def status(project: Project, code: str) -> Status:
    return Status.objects.get(project=project, code=code)


def post_status(member: Membership, order: Order, code_or_id: object, **extra: object):
    if isinstance(code_or_id, str):
        code_or_id = status(order.project, code_or_id).pk
    body = {"status": code_or_id, "version": order.version, **extra}
    return login(member).post(url("status", order.pk), body)


def test_an_operator_accepts_the_order_and_goes_back_to_my_orders(
    operator: Membership, held: Order
) -> None:
    response = post_status(operator, held, "accepted", then="mine")
    assert response.status_code == 302 and response["Location"] == url("mine")
    saved = Order.objects.get(pk=held.pk)
    assert saved.status.code == "accepted"
    assert (saved.locked_by, saved.in_queue) == (None, False)
    event = AuditEvent.objects.get(action="order.status")
    assert event.changes["status"] == ["new", "accepted"]
    assert event.actor_id == str(operator.user_id)
    assert StatusChange.objects.get(order=held).to_status.code == "accepted"


def test_cancelling_without_a_reason_is_refused_naming_the_reason(
    operator: Membership, held: Order
) -> None:
    before = fingerprint(held)
    response = post_status(operator, held, "cancelled", reason="   ")
    assert response.status_code == 200
    assert "reason" in response.context["status_form"].errors
    assert "Reason: A reason is required for the status “Cancelled”." in response.content.decode()
    assert fingerprint(held) == before


def test_cancelling_with_a_reason_keeps_the_reason_as_a_comment(
    operator: Membership, held: Order
) -> None:
    response = post_status(operator, held, "cancelled", reason="ordered by mistake")
    assert response.status_code == 302
    assert Order.objects.get(pk=held.pk).status.code == "cancelled"
    assert held.comments.get().text == "ordered by mistake"
    assert AuditEvent.objects.get(action="order.status").extra == {"reason": "ordered by mistake"}


def test_another_projects_status_is_unknown_here(
    operator: Membership, held: Order, other_project: Project
) -> None:
    before = fingerprint(held)
    response = post_status(operator, held, status(other_project, "accepted").pk)
    assert "status" in response.context["status_form"].errors
    assert "Status: Select a valid choice." in response.content.decode()
    assert fingerprint(held) == before


@pytest.mark.parametrize("value", ["999999", "accepted", ""])
def test_a_status_that_does_not_exist_is_refused(
    operator: Membership, held: Order, value: str
) -> None:
    before = fingerprint(held)
    response = login(operator).post(
        url("status", held.pk), {"status": value, "version": held.version}
    )
    assert "status" in response.context["status_form"].errors
    assert fingerprint(held) == before


def test_an_inactive_status_is_refused(operator: Membership, held: Order) -> None:
    Status.objects.filter(project=held.project, code="accepted").update(is_active=False)
    before = fingerprint(held)
    response = post_status(operator, held, "accepted")
    assert "status" in response.context["status_form"].errors
    assert fingerprint(held) == before


def test_the_same_status_again_is_refused_instead_of_silently_keeping_the_lock(
    operator: Membership, held: Order
) -> None:
    before = fingerprint(held)
    response = post_status(operator, held, "new")
    assert "status" in response.context["status_form"].errors
    assert fingerprint(held) == before


def test_a_stale_page_cannot_overwrite_a_newer_save(operator: Membership, held: Order) -> None:
    seen = Order.objects.get(pk=held.pk)
    do_update_order(Order.objects.get(pk=held.pk), {"address": "Changed meanwhile"})
    before = fingerprint(held)
    response = post_status(operator, seen, "accepted")
    assert response.status_code == 200
    assert "Someone else changed this order; reload it." in response.content.decode()
    assert fingerprint(held) == before
    assert not AuditEvent.objects.filter(action="order.status").exists()


def test_save_and_next_opens_the_next_due_order(
    operator: Membership, held: Order, project: Project, phone: Phone
) -> None:
    following = new_order(project, phone[0], name="Next customer")
    response = post_status(operator, held, "accepted", then="next")
    assert response.status_code == 302 and response["Location"] == card_url(following)
    assert Order.objects.get(pk=following.pk).locked_by == operator.user


def test_save_and_next_with_nothing_left_says_so(operator: Membership, held: Order) -> None:
    response = login(operator).post(
        url("status", held.pk),
        {"status": status(held.project, "accepted").pk, "version": held.version, "then": "next"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url("mine")
    page = response.content.decode()
    assert f"Order {held.number}: Accepted." in page
    assert "No orders are due now" in page
