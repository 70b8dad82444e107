"""POST /pbx/v1/events: the PBX reports how a call goes. A call moves only forward, a call that
is over stays over, and the card shows the times and the talk time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallState, Pbx, SipAccount
from callvault.telephony.setup_actions import do_create_pbx
from callvault.telephony.tests.call_support import (
    LOCAL,
    assert_no_digits_anywhere,
    bobs_phone,
    mine,
    pbx,
    pbx_post,
    press_call,
    resolve,
    sip_project,
    token_of,
)
from conftest import make_project

__all__ = ["bobs_phone", "mine", "pbx", "sip_project"]

Phone = tuple[str, str]


@pytest.fixture
def call(pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order) -> Call:
    """A call the proxy has just dialled."""
    assert resolve(pbx[1], token_of(press_call(operator, mine))).status_code == 200
    return Call.objects.get()


def event(secret: str, call_id: Any, name: str, **fields: Any) -> Any:
    return pbx_post(secret, "events", {"call": call_id, "event": name, **fields}, as_json=True)


def state_of(call: Call) -> Call:
    return Call.objects.get(pk=call.pk)


def test_a_call_rings_is_answered_and_ends_with_its_talk_time(
    pbx: tuple[Pbx, str], call: Call, phone: Phone
) -> None:
    secret = pbx[1]
    answers = [
        event(secret, call.pk, "ringing", at="2026-05-01T10:00:00Z"),
        event(secret, call.pk, "answered", at="2026-05-01T10:00:05+00:00"),
        event(secret, call.pk, "ended", at="2026-05-01T10:01:35Z", cause="normal_clearing"),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * 3
    done = state_of(call)
    assert done.state == CallState.ENDED
    assert done.answered_at == datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC)
    assert done.ended_at == datetime(2026, 5, 1, 10, 1, 35, tzinfo=UTC)
    assert (done.duration_seconds, done.result) == (90, "normal_clearing")
    changes = [e.changes for e in AuditEvent.objects.filter(action="call.state").order_by("id")]
    assert [c["state"] for c in changes] == [
        ["dialing", "ringing"],
        ["ringing", "answered"],
        ["answered", "ended"],
    ]
    actors = set(
        AuditEvent.objects.filter(action="call.state").values_list("actor_kind", flat=True)
    )
    assert actors == {"pbx"}
    assert_no_digits_anywhere(phone[1], *(a.content.decode() for a in answers))


def test_the_pbx_may_give_the_duration_itself(pbx: tuple[Pbx, str], call: Call) -> None:
    event(pbx[1], call.pk, "ended", duration=42)
    assert state_of(call).duration_seconds == 42


def test_a_call_that_is_over_never_moves_back(pbx: tuple[Pbx, str], call: Call) -> None:
    event(pbx[1], call.pk, "busy", cause="486")
    before = AuditEvent.objects.count()
    for late in ("ringing", "answered", "ended", "busy", "failed"):
        assert event(pbx[1], call.pk, late).status_code == 200
    done = state_of(call)
    assert (done.state, done.result, done.answered_at) == (CallState.BUSY, "486", None)
    assert AuditEvent.objects.count() == before  # idempotent: nothing recorded


def test_an_event_out_of_order_does_not_move_the_call_back(
    pbx: tuple[Pbx, str], call: Call
) -> None:
    event(pbx[1], call.pk, "answered")
    event(pbx[1], call.pk, "ringing")
    assert state_of(call).state == CallState.ANSWERED


def test_the_pbxs_own_id_is_kept(pbx: tuple[Pbx, str], call: Call) -> None:
    event(pbx[1], call.pk, "ringing", external_id="1700000000.42")
    assert state_of(call).external_id == "1700000000.42"


def test_another_projects_call_is_not_found(pbx: tuple[Pbx, str], call: Call) -> None:
    _, theirs = do_create_pbx(make_project("gamma"), "theirs", networks=LOCAL)
    response = event(theirs, call.pk, "ended")
    assert response.status_code == 404
    assert event(pbx[1], call.pk + 1000, "ended").status_code == 404
    assert state_of(call).state == CallState.DIALING


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"call": "x", "event": "ended"}, "call"),
        ({"event": "ended"}, "call"),
        ({"call": 1, "event": "exploded"}, "event"),
        ({"call": 1, "event": "ended", "at": "yesterday"}, "at"),
        ({"call": 1, "event": "ended", "duration": -4}, "duration"),
        ({"call": 1, "event": "ended", "duration": "long"}, "duration"),
        ({"call": 1, "event": "failed", "cause": "Rejected by PHONE"}, "cause"),
        ({"call": 1, "event": "failed", "cause": "x" * 101}, "cause"),
        ({"call": 1, "event": "ended", "external_id": "has space"}, "external_id"),
    ],
)
def test_a_bad_field_is_named_in_a_422(
    pbx: tuple[Pbx, str], call: Call, fields: dict[str, Any], bad: str, phone: Phone
) -> None:
    fields = {**fields, "call": call.pk} if fields.get("call") == 1 else fields
    if "cause" in fields:  # a carrier's reason text quoting the number
        fields["cause"] = fields["cause"].replace("PHONE", phone[0])
    response = pbx_post(pbx[1], "events", fields, as_json=True)
    assert response.status_code == 422
    assert response.json()["field"] == bad
    assert_no_digits_anywhere(phone[1], response.content.decode())
    assert state_of(call).state == CallState.DIALING


def test_a_body_that_is_not_a_json_object_is_refused(pbx: tuple[Pbx, str], call: Call) -> None:
    for body in ("{", "[1, 2]"):
        assert pbx_post(pbx[1], "events", body, as_json=True).status_code == 422


def test_a_form_encoded_event_is_accepted(pbx: tuple[Pbx, str], call: Call) -> None:
    response = pbx_post(pbx[1], "events", {"call": call.pk, "event": "ended", "duration": "7"})
    assert response.status_code == 200
    assert state_of(call).duration_seconds == 7


def test_events_need_the_pbxs_secret(pbx: tuple[Pbx, str], call: Call) -> None:
    assert event("cvp_nope_nope", call.pk, "ended").status_code == 401
    assert state_of(call).state == CallState.DIALING


def test_an_event_before_the_token_is_dialled_moves_the_new_call(
    pbx: tuple[Pbx, str],
    sip_project: Project,
    bobs_phone: SipAccount,
    operator: Membership,
    mine: Order,
) -> None:
    press_call(operator, mine)
    call = Call.objects.get()
    event(pbx[1], call.pk, "cancelled")
    assert state_of(call).state == CallState.CANCELLED
