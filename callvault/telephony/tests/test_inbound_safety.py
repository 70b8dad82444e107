"""What the inbound lookup hands the PBX must be safe to put in a SIP header, it must not
serve as an oracle that tells which numbers are customers', and what it records happens as
one transaction."""

from __future__ import annotations

import random
from typing import Any

import pytest

from callvault.accounts.models import Project, SecurityNotice
from callvault.accounts.notices import describe
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.lib.fakephones import fake_phone
from callvault.orders.models import Order
from callvault.orders.tests.workspace_support import new_order
from callvault.telephony import actions, throttle
from callvault.telephony.actions import InboundLimited, do_inbound_call, sip_display_name
from callvault.telephony.models import Call, Pbx, TelephonySettings
from callvault.telephony.setup_actions import do_create_pbx, do_update_telephony_settings
from callvault.telephony.tests.call_support import LOCAL, one_window, pbx, pbx_post, sip_project
from callvault.vault.phones import parse_phone

__all__ = ["one_window", "pbx", "sip_project"]

Phone = tuple[str, str]
# What could end a SIP display name's field and start a URI, a parameter or a header.
UNSAFE = set('"\\<>;:@,=\r\n')


@pytest.mark.parametrize(
    "name",
    [
        'Iv"an<sip:x@evil>;a=b',
        "Ivan\r\nP-Asserted-Identity: <sip:evil>",
        '"><sip:evil@x>',
        'Ivan\\" <sip:x>',
        "Иван;tag=1",
    ],
)
def test_the_display_name_carries_nothing_that_ends_a_sip_field(
    pbx: tuple[Pbx, str], project: Project, phone: Phone, name: str
) -> None:
    order = new_order(project, phone[0], name)
    shown = pbx_post(pbx[1], "inbound", {"caller": phone[1]}, HTTP_ACCEPT="text/plain")
    text = shown.content.decode()
    assert text.startswith(f"Order {order.number}")
    assert not UNSAFE & set(text), text
    as_json = pbx_post(pbx[1], "inbound", {"caller": phone[1]}).json()["display_name"]
    assert not UNSAFE & set(as_json) and len(as_json) <= actions.DISPLAY_NAME_MAX


def test_a_quoted_name_keeps_its_first_word(
    pbx: tuple[Pbx, str], project: Project, phone: Phone
) -> None:
    order = new_order(project, phone[0], 'Iv"an<sip:x@evil>;a=b')
    answer = pbx_post(pbx[1], "inbound", {"caller": phone[1]}).json()
    assert answer["display_name"] == f"Order {order.number} - Iv"


def test_a_long_name_is_cut(pbx: tuple[Pbx, str], project: Project, phone: Phone) -> None:
    new_order(project, phone[0], "A" * 150)
    answer = pbx_post(pbx[1], "inbound", {"caller": phone[1]}).json()
    assert len(answer["display_name"]) <= actions.DISPLAY_NAME_MAX


def test_sip_display_name_keeps_letters_digits_and_plain_punctuation() -> None:
    assert sip_display_name("Заказ 1042 - O'Brien Jr.") == "Заказ 1042 - O'Brien Jr."
    assert sip_display_name('a"b<c>d;e\\f') == "a b c d e f"


@pytest.mark.parametrize(
    "name",
    ['Caller"', "New <caller>", "Caller;x=1", "Call me 5551234", "a\nb", "x" * 41, "  "],
)
def test_the_unknown_callers_name_is_checked_when_saved(sip_project: Project, name: str) -> None:
    with pytest.raises(FieldErrors) as refused:
        do_update_telephony_settings(sip_project, {"unknown_caller_name": name})
    assert set(refused.value.errors) == {"unknown_caller_name"}


def test_an_unknown_callers_name_saved_before_the_check_is_cleaned_when_sent(
    pbx: tuple[Pbx, str], sip_project: Project, rng: random.Random
) -> None:
    TelephonySettings.objects.filter(project=sip_project).update(
        unknown_caller_name='New "caller"<sip:x>'
    )
    _typed, stranger = fake_phone(rng)
    answer = pbx_post(pbx[1], "inbound", {"caller": stranger}).json()
    assert answer["display_name"] == "New caller sip x"


# --- not a number oracle ------------------------------------------------------------------


def test_past_the_limit_a_pbx_learns_nothing_and_the_owners_hear_once(
    pbx: tuple[Pbx, str], order: Order, phone: Phone, settings: Any, one_window: None
) -> None:
    settings.TELEPHONY_INBOUND_PER_MINUTE = 3
    e164 = parse_phone(phone[0], region="RU").e164
    for _ in range(3):
        assert do_inbound_call(pbx[0], e164).order_number == order.number
    for _ in range(3):
        with pytest.raises(InboundLimited):
            do_inbound_call(pbx[0], e164)
    assert Call.objects.count() == 3
    (event,) = AuditEvent.objects.filter(action="call.inbound_limited")
    assert (event.object_type, event.object_id, event.extra["limit"]) == ("pbx", str(pbx[0].pk), 3)
    (notice,) = SecurityNotice.objects.filter(kind="inbound_limited")
    assert describe(notice) == (
        "The PBX “kamailio” asked who is calling more than 3 times within a minute: its "
        "further lookups are refused until the minute is over."
    )


def test_the_limit_is_per_pbx(
    pbx: tuple[Pbx, str], sip_project: Project, phone: Phone, settings: Any
) -> None:
    settings.TELEPHONY_INBOUND_PER_MINUTE = 1
    other, _secret = do_create_pbx(sip_project, "second", networks=LOCAL)
    do_inbound_call(pbx[0], phone[1])
    do_inbound_call(other, phone[1])  # a count of its own
    with pytest.raises(InboundLimited):
        do_inbound_call(pbx[0], phone[1])


def test_a_window_counts_on_its_own_whatever_the_cache_does_to_expiry(db: Any) -> None:
    start = 1_000_020.0  # within one minute's window
    assert [throttle.count("k", 60, start + i) for i in range(3)] == [1, 2, 3]
    assert throttle.count("k", 60, start + 60) == 1  # the next minute's window
    assert throttle.count("other", 60, start) == 1


# --- one transaction ----------------------------------------------------------------------


def test_a_new_order_is_not_kept_when_the_call_is_not_recorded(
    pbx: tuple[Pbx, str], sip_project: Project, rng: random.Random, monkeypatch: Any
) -> None:
    do_update_telephony_settings(sip_project, {"create_order_for_unknown": True})
    _typed, stranger = fake_phone(rng)
    from callvault.audit.recorder import record_event

    def failing(action: str, **kwargs: Any) -> Any:
        if action == "call.inbound":
            raise RuntimeError("the record is unavailable")
        return record_event(action, **kwargs)

    monkeypatch.setattr("callvault.telephony.actions.record_event", failing)
    with pytest.raises(RuntimeError):
        do_inbound_call(pbx[0], stranger)
    assert not Order.objects.exists() and not Call.objects.exists()
