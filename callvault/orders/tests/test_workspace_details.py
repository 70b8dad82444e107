"""Editing the customer's name and address on the card, against the version the operator saw."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order, do_update_order
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import assert_no_digits, event_text
from callvault.orders.tests.workspace_support import card_url, fingerprint, login, url

Phone = tuple[str, str]


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return Order.objects.get(pk=order.pk)


def post_details(member: Membership, order: Order, **values: object):
    body: dict[str, object] = {
        "customer_name": order.customer_name,
        "address": order.address,
        "version": order.version,
        **values,
    }
    return login(member).post(url("update", order.pk), body)


def test_an_operator_corrects_the_name_and_address_and_it_is_recorded(
    operator: Membership, mine: Order
) -> None:
    response = post_details(operator, mine, customer_name="Ivan Sidorov", address="Tver\r\nMain 1")
    assert response.status_code == 302 and response["Location"] == card_url(mine)
    saved = Order.objects.get(pk=mine.pk)
    assert (saved.customer_name, saved.address) == ("Ivan Sidorov", "Tver\nMain 1")
    assert saved.version == mine.version + 1
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {
        "address": ["Moscow", "Tver\nMain 1"],
        "customer_name": ["Ivan Petrov", "Ivan Sidorov"],
    }


def test_someone_elses_earlier_save_wins_and_the_operator_is_told(
    operator: Membership, mine: Order
) -> None:
    seen_version = mine.version
    do_update_order(Order.objects.get(pk=mine.pk), {"address": "Changed by a supervisor"})
    before = fingerprint(mine)
    response = post_details(operator, mine, customer_name="Mine", version=seen_version)
    assert response.status_code == 200
    assert "Someone else changed this order; reload it." in response.content.decode()
    assert fingerprint(mine) == before
    saved = Order.objects.get(pk=mine.pk)
    assert (saved.customer_name, saved.address) == ("Ivan Petrov", "Changed by a supervisor")
    # The card shown with the message has the order as it is now, not the refused edit.
    assert response.context["order"].address == "Changed by a supervisor"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"customer_name": "x" * 201}, "customer_name"),
        ({"address": "x" * 1001}, "address"),
        ({"version": ""}, "version"),
        ({"version": "-1"}, "version"),
    ],
)
def test_bad_input_is_refused_by_name_and_nothing_is_saved(
    operator: Membership, mine: Order, values: dict[str, object], field: str
) -> None:
    before = fingerprint(mine)
    response = post_details(operator, mine, **values)
    assert response.status_code == 200
    form = response.context["details_form"]
    assert field in form.errors
    assert f"{form.fields[field].label}: " in response.content.decode()
    assert fingerprint(mine) == before


def test_an_untouched_form_saves_nothing(operator: Membership, mine: Order) -> None:
    before = fingerprint(mine)
    response = post_details(operator, mine)
    assert response.status_code == 302
    assert fingerprint(mine) == before


def test_digits_the_operator_cannot_see_stay_in_a_field_they_did_not_touch(
    operator: Membership, project: Project, phone: Phone
) -> None:
    lead = Lead(phone=phone[0], name=f"Ivan {phone[0]}", address="Moscow")
    order = do_create_order(project, lead).order
    do_assign_order(order, operator.user)
    order = Order.objects.get(pk=order.pk)
    # The form showed the name with the number blanked; the operator changed only the address.
    response = post_details(operator, order, customer_name="Ivan [redacted]", address="Tver")
    assert response.status_code == 302
    saved = Order.objects.get(pk=order.pk)
    assert (saved.customer_name, saved.address) == (f"Ivan {phone[0]}", "Tver")
    assert AuditEvent.objects.get(action="order.update").changes == {"address": ["Moscow", "Tver"]}


def test_a_number_typed_into_the_name_is_kept_out_of_the_record(
    operator: Membership, mine: Order, phone: Phone
) -> None:
    post_details(operator, mine, customer_name=f"Ivan {phone[0]}")
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {"customer_name": ["Ivan Petrov", "Ivan [redacted]"]}
    assert_no_digits(event_text(event), phone[1])
