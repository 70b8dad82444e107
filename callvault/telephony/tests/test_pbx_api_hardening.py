"""The PBX API against what a real proxy sends and what an attacker sends: events by the
dialled token (as the reference Kamailio reports them), a number kept out of the address,
the inbound lookups' limit, bad requests that cannot flood the audit trail, and PBXs that
must be allow-listed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project, SecurityNotice
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.telephony.models import Call, CallState, Pbx, SipAccount
from callvault.telephony.pbx_auth import REFUSALS_WINDOW_SECONDS
from callvault.telephony.setup_actions import do_create_pbx, hash_pbx_secret
from callvault.telephony.tests.call_support import (
    LOCAL,
    bobs_phone,
    mine,
    one_window,
    pbx,
    pbx_post,
    press_call,
    resolve,
    sip_project,
    token_of,
)
from conftest import make_project

__all__ = ["bobs_phone", "mine", "one_window", "pbx", "sip_project"]

Phone = tuple[str, str]


@pytest.fixture
def dialled(pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order) -> str:
    """A token the proxy has just resolved (the call is dialing)."""
    token = token_of(press_call(operator, mine))
    assert resolve(pbx[1], token).status_code == 200
    return token


def kamailio_event(secret: str, body: str) -> Any:
    """What deploy/kamailio/kamailio.cfg route[CALL_EVENT] posts: form fields, by token."""
    return pbx_post(secret, "events", body, content_type="application/x-www-form-urlencoded")


# --- events by the dialled token ----------------------------------------------------------


def test_the_reference_proxys_events_move_the_call(pbx: tuple[Pbx, str], dialled: str) -> None:
    answers = [
        kamailio_event(pbx[1], f"token={dialled}&event=ringing"),
        kamailio_event(pbx[1], f"token={dialled}&event=answered"),
        kamailio_event(pbx[1], f"token={dialled}&event=ended&cause=200&duration=42"),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * 3
    call = Call.objects.get()
    assert (call.state, call.duration_seconds, call.result) == (CallState.ENDED, 42, "200")
    states = [
        e.changes["state"][1]
        for e in AuditEvent.objects.filter(action="call.state").order_by("pk")
        if "state" in e.changes
    ]
    assert states == ["ringing", "answered", "ended"]
    assert dialled not in str([(e.changes, e.extra) for e in AuditEvent.objects.all()])


def test_a_token_and_the_calls_id_may_both_be_given_if_they_agree(
    pbx: tuple[Pbx, str], dialled: str
) -> None:
    call = Call.objects.get()
    body = {"token": dialled, "call": call.pk, "event": "answered"}
    assert pbx_post(pbx[1], "events", body, as_json=True).status_code == 200
    other = {"token": dialled, "call": call.pk + 1, "event": "ended"}
    answer = pbx_post(pbx[1], "events", other, as_json=True)
    assert (answer.status_code, answer.json()["field"]) == (422, "token")
    assert Call.objects.get().state == CallState.ANSWERED


def test_an_unspent_or_expired_token_still_names_its_call(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token = token_of(press_call(operator, mine))
    from django.utils import timezone

    from callvault.telephony.models import CallToken

    CallToken.objects.update(expires_at=timezone.now())
    assert kamailio_event(pbx[1], f"token={token}&event=failed&cause=503").status_code == 200
    assert Call.objects.get().state == CallState.FAILED


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ("token=ct-" + "0" * 32 + "&event=answered", 404, None),  # no such token
        ("token=ct-XYZ&event=answered", 422, "token"),
        ("token=1234567&event=answered", 422, "token"),
        ("event=answered", 422, "call"),
    ],
)
def test_an_unknown_or_malformed_token_is_refused(
    pbx: tuple[Pbx, str], dialled: str, body: str, status: int, field: str | None
) -> None:
    answer = kamailio_event(pbx[1], body)
    assert answer.status_code == status
    assert answer.json().get("field") == field
    assert Call.objects.get().state == CallState.DIALING


def test_another_projects_pbx_gets_404_for_the_token(dialled: str) -> None:
    _, theirs = do_create_pbx(make_project("gamma"), "theirs", networks=LOCAL)
    assert kamailio_event(theirs, f"token={dialled}&event=ended").status_code == 404
    assert Call.objects.get().state == CallState.DIALING


def test_the_calls_id_still_works(pbx: tuple[Pbx, str], dialled: str) -> None:
    call = Call.objects.get()
    answer = kamailio_event(pbx[1], f"call={call.pk}&event=busy")
    assert answer.status_code == 200 and Call.objects.get().state == CallState.BUSY


def test_events_are_read_from_the_body_only(pbx: tuple[Pbx, str], dialled: str) -> None:
    call = Call.objects.get()
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    answer = client.post(
        f"/pbx/v1/events?call={call.pk}&event=ended",
        {},
        HTTP_AUTHORIZATION=f"Bearer {pbx[1]}",
    )
    assert answer.status_code == 422 and Call.objects.get().state == CallState.DIALING


# --- the caller's number stays out of the address ----------------------------------------


@pytest.mark.parametrize("body", [{}, {"caller": "anonymous"}])
def test_inbound_refuses_a_caller_in_the_query_string(
    pbx: tuple[Pbx, str], order: Order, phone: Phone, body: dict[str, str]
) -> None:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    answer = client.post(
        "/pbx/v1/inbound?caller=" + phone[1].replace("+", "%2B"),
        body,
        HTTP_AUTHORIZATION=f"Bearer {pbx[1]}",
    )
    assert (answer.status_code, answer.json()["field"]) == (422, "caller")
    assert phone[1].lstrip("+") not in answer.content.decode()
    assert not Call.objects.exists()


# --- the inbound limit, over HTTP ---------------------------------------------------------


def test_past_the_limit_inbound_answers_429_and_tells_nothing(
    pbx: tuple[Pbx, str], order: Order, phone: Phone, settings: Any
) -> None:
    settings.TELEPHONY_INBOUND_PER_MINUTE = 2
    for _ in range(2):
        answer = pbx_post(pbx[1], "inbound", {"caller": phone[1]})
        assert answer.json()["order"] == order.number
    refused = pbx_post(pbx[1], "inbound", {"caller": phone[1]})
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "order" not in refused.json() and str(order.number) not in refused.content.decode()
    assert Call.objects.count() == 2
    assert SecurityNotice.objects.filter(kind="inbound_limited").count() == 1


def test_the_review_scenario_an_oracle_no_longer(
    sip_project: Project, order: Order, phone: Phone, settings: Any, one_window: None
) -> None:
    """A PBX secret cannot be had without the capability (test_routing_rights.py), and a
    PBX that has one still cannot try numbers at speed."""
    settings.TELEPHONY_INBOUND_PER_MINUTE = 5
    _, secret = do_create_pbx(sip_project, "office", networks=LOCAL)
    answers = [pbx_post(secret, "inbound", {"caller": phone[1]}) for _ in range(20)]
    assert [a.status_code for a in answers].count(429) == 15


# --- refusals cannot flood the audit trail ------------------------------------------------


def test_refusals_from_one_address_are_recorded_once_a_minute_with_a_count(
    db: Any, one_window: None
) -> None:
    for _ in range(30):
        assert pbx_post("cvp_deadbeef_x", "resolve", {"token": "x"}).status_code == 401
    (first,) = AuditEvent.objects.filter(action="pbx.refused")
    assert first.extra == {"prefix": "deadbeef", "reason": "unknown", "ip": "127.0.0.1"}
    # Another address is recorded on its own.
    pbx_post("cvp_deadbeef_x", "resolve", {"token": "x"}, REMOTE_ADDR="192.0.2.7")
    assert AuditEvent.objects.filter(action="pbx.refused").count() == 2


def test_the_next_minutes_event_says_how_many_went_unrecorded(db: Any) -> None:
    from callvault.telephony.pbx_auth import _refused

    now = time.time()
    for _ in range(7):
        _refused(None, "deadbeef", "unknown", "192.0.2.9", now)
    # A later minute, not the next one: the count waits for the address's next event.
    _refused(None, "deadbeef", "unknown", "192.0.2.9", now + REFUSALS_WINDOW_SECONDS * 5)
    _refused(None, "deadbeef", "unknown", "192.0.2.9", now + REFUSALS_WINDOW_SECONDS * 9)
    events = list(AuditEvent.objects.filter(action="pbx.refused").order_by("pk"))
    assert [e.extra.get("unrecorded_before") for e in events] == [None, 6, None]


# --- every PBX is allow-listed ------------------------------------------------------------


def test_a_pbx_saved_without_networks_is_refused(
    sip_project: Project, bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    """A PBX from before networks were required (its row has none) gets 403."""
    secret = "cvp_0badc0de_" + "s" * 43
    Pbx.objects.create(
        project=sip_project,
        name="old",
        prefix="0badc0de",
        secret_hash=hash_pbx_secret(secret),
        networks="",
    )
    token = token_of(press_call(operator, mine))
    answer = resolve(secret, token)
    assert (answer.status_code, answer.content) == (403, b"forbidden")
    refused = AuditEvent.objects.get(action="pbx.refused")
    assert refused.extra["reason"] == "no networks"
    assert Call.objects.get().state == CallState.NEW
