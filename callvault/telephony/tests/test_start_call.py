"""Pressing "Call" on the order card: the checks, the recorded call, and what the browser gets
(a sip: link holding a one-time token, never the number)."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.guard.models import QuotaKind
from callvault.guard.quotas import do_set_quota
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallState, CallToken
from callvault.telephony.providers.sip_token import hash_token
from callvault.telephony.setup_actions import do_disable_sip_account, do_update_telephony_settings
from callvault.telephony.tests.call_support import (
    SIP_DOMAIN,
    assert_no_digits_anywhere,
    bobs_phone,
    card_client,
    hold,
    mine,
    press_call,
    sip_account,
    sip_project,
    token_of,
)
from conftest import make_member

__all__ = ["bobs_phone", "mine", "sip_project"]  # fixtures used below

Phone = tuple[str, str]


def test_the_operator_gets_a_sip_link_with_a_token_and_nothing_else(
    sip_project: Project,
    bobs_phone: object,
    operator: Membership,
    mine: Order,
    phone: Phone,
    caplog,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = press_call(operator, mine)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    token = token_of(response)
    assert f'href="sip:{token}@{SIP_DOMAIN}"' in page
    assert "Dialing" in page
    call = Call.objects.get()
    assert (call.order_id, call.member_id, call.provider, call.state) == (
        mine.pk,
        operator.user_id,
        "sip_token",
        CallState.NEW,
    )
    stored = CallToken.objects.get(call=call)
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    assert stored.sip_account == bobs_phone and stored.used_at is None
    event = AuditEvent.objects.get(action="call.start")
    assert (event.object_type, event.object_id, event.actor_name) == ("call", str(call.pk), "bob")
    assert event.changes["order"] == [None, mine.number]
    assert token not in str(event.changes) + str(event.extra)
    assert_no_digits_anywhere(phone[1], page, caplog.text)


def test_each_press_issues_a_new_token(
    sip_project: Project, bobs_phone: object, operator: Membership, mine: Order
) -> None:
    first, second = token_of(press_call(operator, mine)), token_of(press_call(operator, mine))
    assert first != second
    assert Call.objects.count() == 2


def test_the_call_counts_once_against_the_quota(
    sip_project: Project, bobs_phone: object, owner: Membership, operator: Membership, mine: Order
) -> None:
    do_set_quota(sip_project, QuotaKind.CALL, 2, role=Role.OPERATOR, acting=owner)
    assert press_call(operator, mine).status_code == 200
    assert press_call(operator, mine).status_code == 200
    refused = press_call(operator, mine)
    assert refused.status_code == 429
    assert Call.objects.count() == 2


def test_without_htmx_the_started_call_has_a_page_with_the_link(
    sip_project: Project, bobs_phone: object, operator: Membership, mine: Order, phone: Phone
) -> None:
    response = press_call(operator, mine, htmx=False)
    assert response.status_code == 200
    page = response.content.decode()
    assert token_of(response) and "Back to the order" in page
    assert_no_digits_anywhere(phone[1], page)


def test_a_trainee_may_call_the_held_order_by_default(
    sip_project: Project, trainee: Membership, order: Order
) -> None:
    sip_account(trainee, "1009")
    hold(trainee, order)
    assert token_of(press_call(trainee, order))


def test_a_project_can_keep_trainees_from_calling(
    sip_project: Project, trainee: Membership, order: Order
) -> None:
    sip_account(trainee, "1009")
    hold(trainee, order)
    do_update_telephony_settings(sip_project, {"trainees_may_call": False})
    response = press_call(trainee, order)
    assert response.status_code == 200
    assert "Trainees may not call in this project." in response.content.decode()
    assert not Call.objects.exists()
    refused = AuditEvent.objects.get(action="call.refused")
    assert (refused.object_id, refused.extra) == (str(order.pk), {"reason": "trainee"})


def test_without_an_active_sip_account_there_is_no_call(
    sip_project: Project, bobs_phone: object, operator: Membership, mine: Order
) -> None:
    do_disable_sip_account(bobs_phone)  # type: ignore[arg-type]
    response = press_call(operator, mine)
    assert "You have no active SIP account" in response.content.decode()
    assert not Call.objects.exists() and not CallToken.objects.exists()
    assert AuditEvent.objects.get(action="call.refused").extra == {"reason": "no_sip_account"}


def test_a_provider_with_missing_settings_is_refused_without_a_record(
    project: Project, operator: Membership, mine: Order
) -> None:
    do_update_telephony_settings(project, {"provider": "sip_token"})  # no SIP domain
    before = AuditEvent.objects.count()
    response = press_call(operator, mine)
    assert "Telephony is not completely set up yet" in response.content.decode()
    assert AuditEvent.objects.count() == before and not Call.objects.exists()


def test_without_a_provider_the_card_says_so(
    project: Project, operator: Membership, mine: Order
) -> None:
    client = card_client(operator)
    response = client.post(reverse("orders:call", args=["alpha", mine.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("orders:card", args=["alpha", mine.pk])
    page = response.content.decode()
    assert "No telephony provider is configured for this project." in page


@pytest.mark.parametrize("who", ["anonymous", "outsider", "other operator", "supervisor-only"])
def test_only_members_who_may_edit_the_order_start_a_call(
    who: str,
    sip_project: Project,
    outsider: Membership,
    operator: Membership,
    order: Order,
) -> None:
    do_assign_order(order, make_member(sip_project, "olga", Role.OPERATOR).user)
    path = reverse("orders:call", args=["alpha", order.pk])
    if who == "anonymous":
        from callvault.orders.tests.support import HttpsClient

        assert HttpsClient().post(path)["Location"].startswith("/accounts/login/")
    elif who == "outsider":
        assert card_client(outsider).post(path).status_code == 404
    elif who == "other operator":
        sip_account(operator, "1001")
        assert card_client(operator).post(path).status_code == 404
    else:
        viewer = make_member(sip_project, "vic", Role.SUPERVISOR)
        Membership.objects.filter(pk=viewer.pk).update(can_edit_orders=False)
        assert card_client(viewer).post(path).status_code == 403
    assert not Call.objects.exists()


def test_the_card_lists_the_calls_with_their_state_and_talk_time(
    sip_project: Project, bobs_phone: object, operator: Membership, mine: Order, phone: Phone
) -> None:
    press_call(operator, mine)
    Call.objects.update(state=CallState.ENDED, duration_seconds=75)
    page = card_client(operator).get(reverse("orders:card", args=["alpha", mine.pk]))
    text = page.content.decode()
    section = text[text.index('id="calls"') :]
    assert "Ended" in section and "75 seconds" in section and "bob" in section
    assert_no_digits_anywhere(phone[1], text)
