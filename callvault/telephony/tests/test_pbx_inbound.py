"""POST /pbx/v1/inbound: who is calling. The PBX gets "Order 1042 - Ivan" and the operator to
route to, found through the blind index; never the caller's number back."""

from __future__ import annotations

import random
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import STYLES, fake_phone
from callvault.orders.actions import do_assign_order, do_change_status
from callvault.orders.models import Order, Status
from callvault.orders.tests.workspace_support import new_order
from callvault.telephony.models import Call, CallDirection, CallState, Pbx
from callvault.telephony.setup_actions import do_create_pbx, do_update_telephony_settings
from callvault.telephony.tests.call_support import (
    LOCAL,
    assert_no_digits_anywhere,
    pbx,
    pbx_post,
    sip_account,
    sip_project,
)
from conftest import make_project

__all__ = ["pbx", "sip_project"]

Phone = tuple[str, str]


def ask(secret: str, caller: str, *, as_json: bool = False, **extra: Any) -> Any:
    return pbx_post(secret, "inbound", {"caller": caller}, as_json=as_json, **extra)


@pytest.mark.parametrize("style", range(len(STYLES)))
def test_a_known_caller_is_named_by_the_order_in_any_writing(
    pbx: tuple[Pbx, str], operator: Membership, order: Order, style: int, phone: Phone
) -> None:
    do_assign_order(order, operator.user)
    sip_account(operator, "1001")
    area, line = phone[1][2:5], phone[1][-3:]
    written = STYLES[style].format(a=area, l=line)
    response = ask(pbx[1], written)
    assert response.status_code == 200
    assert response.json() == {
        "display_name": f"Order {order.number} - Ivan",
        "order": order.number,
        "operator": "1001",
        "call": Call.objects.get().pk,
    }
    call = Call.objects.get()
    assert (call.direction, call.state, call.order_id, call.member_id) == (
        CallDirection.INBOUND,
        CallState.RINGING,
        order.pk,
        operator.user_id,
    )
    event = AuditEvent.objects.get(action="call.inbound")
    assert (event.actor_kind, event.extra["known_caller"]) == ("pbx", True)
    assert_no_digits_anywhere(phone[1], response.content.decode())


def test_the_newest_open_order_is_the_one_named(
    pbx: tuple[Pbx, str], project: Project, phone: Phone
) -> None:
    first = new_order(project, phone[0], "Anna Old")
    second = new_order(project, phone[0], "Boris New")
    closed = new_order(project, phone[0], "Carl Closed")
    do_change_status(closed, Status.objects.get(project=project, code="accepted"))
    assert first.number < second.number < closed.number
    answer = ask(pbx[1], phone[1]).json()
    assert answer["order"] == second.number and answer["display_name"].endswith("Boris")
    assert answer["operator"] is None  # nobody is assigned


def test_a_name_with_digits_in_it_shows_no_digits(
    pbx: tuple[Pbx, str], project: Project, rng: random.Random
) -> None:
    typed, e164 = fake_phone(rng, style=3)
    order = new_order(project, typed, f"{typed} Ivan")
    answer = ask(pbx[1], e164).json()
    assert answer["display_name"] == f"Order {order.number} - Ivan"


def test_an_unknown_caller_gets_the_neutral_name_and_no_order(
    pbx: tuple[Pbx, str], order: Order, phone: Phone, rng: random.Random
) -> None:
    stranger = phone[1]
    while stranger == phone[1]:  # another number than the order's
        _, stranger = fake_phone(rng)
    response = ask(pbx[1], stranger, as_json=True)
    assert response.json() == {
        "display_name": "New caller",
        "order": None,
        "operator": None,
        "call": Call.objects.get().pk,
    }
    assert Order.objects.count() == 1
    assert_no_digits_anywhere(stranger, response.content.decode())


def test_an_unknown_caller_may_get_a_new_order(
    pbx: tuple[Pbx, str], sip_project: Project, rng: random.Random
) -> None:
    do_update_telephony_settings(
        sip_project, {"create_order_for_unknown": True, "unknown_caller_name": "Incoming"}
    )
    typed, e164 = fake_phone(rng, style=2)
    answer = ask(pbx[1], typed).json()
    created = Order.objects.get()
    assert answer == {
        "display_name": "Incoming",
        "order": created.number,
        "operator": None,
        "call": Call.objects.get().pk,
    }
    assert created.source == "inbound call" and created.phone_mask
    create = AuditEvent.objects.get(action="order.create")
    assert create.actor_kind == "pbx"
    assert AuditEvent.objects.get(action="call.inbound").extra["order_created"] is True
    assert_no_digits_anywhere(e164, str(answer))


def test_something_that_is_not_a_number_is_an_unknown_caller(pbx: tuple[Pbx, str]) -> None:
    do_update_telephony_settings(pbx[0].project, {"create_order_for_unknown": True})
    answer = ask(pbx[1], "anonymous").json()
    assert (answer["display_name"], answer["order"]) == ("New caller", None)
    assert not Order.objects.exists()


def test_a_proxy_that_wants_text_gets_the_name_alone(
    pbx: tuple[Pbx, str], order: Order, phone: Phone
) -> None:
    response = ask(pbx[1], phone[1], HTTP_ACCEPT="text/plain")
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == f"Order {order.number} - Ivan"


def test_the_caller_is_required(pbx: tuple[Pbx, str]) -> None:
    response = pbx_post(pbx[1], "inbound", {"called": "100"})
    assert (response.status_code, response.json()["field"]) == (422, "caller")


def test_another_projects_pbx_does_not_find_the_order(order: Order, phone: Phone) -> None:
    _, theirs = do_create_pbx(make_project("gamma"), "theirs", networks=LOCAL)
    answer = ask(theirs, phone[1]).json()
    assert answer["order"] is None and answer["display_name"] == "New caller"


def test_inbound_needs_the_pbxs_secret(order: Order, phone: Phone) -> None:
    assert ask("cvp_a_b", phone[1]).status_code == 401
    assert not Call.objects.exists()


def test_a_pbx_that_names_no_language_gets_the_installations(
    order: Order, phone: Phone, pbx: tuple[Pbx, str]
) -> None:
    response = ask(pbx[1], phone[1], HTTP_ACCEPT_LANGUAGE="")
    assert response.json()["display_name"] == f"Заказ {order.number} - Ivan"
