"""The "Call" button: POST /p/<slug>/orders/<id>/call/ carries only the order id.

A project without a telephony provider answers that none is configured, after the same access
checks a real call needs, and records nothing. Calls through the providers are tested in
callvault/telephony/tests/ (test_start_call.py and the provider tests)."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, assert_no_digits, event_text
from callvault.orders.tests.workspace_support import card_url, login, url
from conftest import make_member

NO_PROVIDER = "No telephony provider is configured for this project."
Phone = tuple[str, str]


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return order


def test_it_sends_anonymous_visitors_to_login(order: Order) -> None:
    assert HttpsClient().post(url("call", order.pk))["Location"].startswith("/accounts/login/")


def test_it_hides_the_order_from_an_outsider(outsider: Membership, order: Order) -> None:
    client = login(outsider)
    assert client.post(url("call", order.pk)).status_code == 404
    assert client.post(url("call", order.pk, slug="beta")).status_code == 404


def test_it_hides_another_operators_order(
    operator: Membership, project: Project, order: Order
) -> None:
    do_assign_order(order, make_member(project, "olga", Role.OPERATOR).user)
    assert login(operator).post(url("call", order.pk)).status_code == 404


def test_it_takes_only_post(operator: Membership, mine: Order) -> None:
    assert login(operator).get(url("call", mine.pk)).status_code == 405


def test_it_says_no_provider_is_configured_and_records_no_digits(
    operator: Membership, mine: Order, phone: Phone
) -> None:
    events_before = AuditEvent.objects.count()
    response = login(operator).post(url("call", mine.pk), follow=True)
    assert response.redirect_chain == [(card_url(mine), 302)]
    page = response.content.decode()
    assert NO_PROVIDER in page
    assert_no_digits(page, phone[1])
    # Only the card shown afterwards is recorded; the call itself writes nothing.
    new = AuditEvent.objects.order_by("id")[events_before:]
    assert [e.action for e in new] == ["order.view"]
    for event in AuditEvent.objects.all():
        assert_no_digits(event_text(event), phone[1])


def test_with_htmx_it_answers_with_the_message_alone(
    operator: Membership, mine: Order, phone: Phone
) -> None:
    events_before = AuditEvent.objects.count()
    response = login(operator).post(url("call", mine.pk), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.content.decode().strip() == f'<span class="notice">{NO_PROVIDER}</span>'
    assert AuditEvent.objects.count() == events_before


def test_the_card_offers_the_call_button_posting_only_the_order_id(
    operator: Membership, mine: Order
) -> None:
    page = login(operator).get(card_url(mine)).content.decode()
    form = page[page.index(f'action="{url("call", mine.pk)}"') :]
    form = form[: form.index("</form>")]
    assert 'hx-target="#call-result"' in form
    assert form.count("<input") == 1 and 'name="csrfmiddlewaretoken"' in form
