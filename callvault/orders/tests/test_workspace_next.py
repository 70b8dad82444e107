"""The "Next order" button: POST /p/<slug>/orders/next/ hands out the queue's next order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.orders.tests.workspace_support import card_url, login, new_order, url, whole_day
from conftest import make_member

Phone = tuple[str, str]


@pytest.fixture(autouse=True)
def always_calling_hours(project: Project) -> None:
    whole_day(project)


def test_it_sends_anonymous_visitors_to_login(order: Order) -> None:
    response = HttpsClient().post(url("next"))
    assert response["Location"].startswith("/accounts/login/")
    assert not AuditEvent.objects.filter(action="order.claim").exists()


def test_an_outsider_gets_nothing_from_this_projects_queue(
    outsider: Membership, order: Order
) -> None:
    assert login(outsider).post(url("next")).status_code == 404
    assert not AuditEvent.objects.filter(action="order.claim").exists()


def test_it_hands_the_operator_the_due_order_and_opens_its_card(
    operator: Membership, order: Order
) -> None:
    response = login(operator).post(url("next"))
    assert response.status_code == 302
    assert response["Location"] == card_url(order)
    order.refresh_from_db()
    assert order.locked_by == operator.user
    assert order.locked_until is not None and order.locked_until > timezone.now()
    event = AuditEvent.objects.get(action="order.claim")
    assert (event.object_id, event.changes) == (str(order.pk), {"locked_by": [None, "bob"]})


def test_an_operator_who_holds_an_order_is_sent_back_to_it(
    operator: Membership, project: Project, order: Order, phone: Phone
) -> None:
    client = login(operator)
    client.post(url("next"))
    other = new_order(project, phone[0], name="Second")
    response = client.post(url("next"), follow=True)
    assert response.redirect_chain[-1][0] == card_url(order)
    assert "You still hold this order" in response.content.decode()
    assert AuditEvent.objects.filter(action="order.claim").count() == 1
    other.refresh_from_db()
    assert other.locked_by is None


def test_with_nothing_due_it_says_so_on_my_orders(operator: Membership, order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(next_call_at=timezone.now() + timedelta(hours=1))
    response = login(operator).post(url("next"), follow=True)
    assert response.redirect_chain == [(url("mine"), 302)]
    assert "No orders are due now" in response.content.decode()
    assert not AuditEvent.objects.filter(action="order.claim").exists()


def test_two_operators_pressing_next_get_different_orders(
    operator: Membership, project: Project, order: Order, phone: Phone
) -> None:
    second = new_order(project, phone[0], name="Second")
    colleague = make_member(project, "olga", Role.OPERATOR)
    first_answer = login(operator).post(url("next"))
    second_answer = login(colleague).post(url("next"))
    assert {first_answer["Location"], second_answer["Location"]} == {
        card_url(order),
        card_url(second),
    }
    third = login(make_member(project, "pavel", Role.OPERATOR)).post(url("next"))
    assert third["Location"] == url("mine")


def test_the_header_offers_next_order_to_members_who_edit_orders(
    operator: Membership, supervisor: Membership, order: Order
) -> None:
    page = login(operator).get(url("mine")).content.decode()
    assert f'action="{url("next")}"' in page
    Membership.objects.filter(pk=supervisor.pk).update(can_edit_orders=False)
    page = login(supervisor).get(url("mine")).content.decode()
    assert f'action="{url("next")}"' not in page
