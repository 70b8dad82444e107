"""Failed logins counted per username and per address, escalating lockouts, and what a
locked-out person (or an attacker) sees."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessFailureLog, AccessLog
from django.db.models import F
from django.test import Client, RequestFactory
from django.urls import reverse

from callvault.accounts.lockout import (
    address_lock,
    is_locked_out,
    record_second_factor_failure,
    username_lock,
)
from callvault.accounts.models import SecurityNotice
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, make_member

OFFICE = "198.51.100.7"
HOME = "203.0.113.50"


def attempt(username: str, password: str, ip: str = OFFICE, **headers: Any) -> Any:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip, **headers
    )


def fail(username: str, times: int, ip: str = OFFICE) -> Any:
    response = None
    for _ in range(times):
        response = attempt(username, "not the password 1", ip)
    return response


def logged_in(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"] == "/")


def travel(minutes: float) -> None:
    """Move every recorded failure and login this far into the past (the clock, in effect)."""
    shift = timedelta(minutes=minutes)
    AccessFailureLog.objects.update(attempt_time=F("attempt_time") - shift)
    AccessLog.objects.update(attempt_time=F("attempt_time") - shift)


def page_text(response: Any) -> str:
    """The page without its per-request token, for comparing two answers."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_four_wrong_passwords_leave_the_door_open(operator):
    response = fail("bob", 4)
    assert response.status_code == 200
    assert "Wrong username or password." in response.content.decode()
    assert logged_in(attempt("bob", PASSWORD))


def test_the_fifth_wrong_password_locks_the_username_for_five_minutes(operator):
    response = fail("bob", 5)
    assert response.status_code == 429
    assert "Too many failed attempts. Try again in 5 minutes." in response.content.decode()
    refused = attempt("bob", PASSWORD)
    assert refused.status_code == 429 and not logged_in(refused)
    # From any address: it is the username that is locked.
    assert attempt("bob", PASSWORD, ip=HOME).status_code == 429
    lock = username_lock("bob")
    assert lock is not None and lock.duration == timedelta(minutes=5)


def test_the_lockout_ends_by_itself(operator):
    fail("bob", 5)
    travel(4)
    assert attempt("bob", PASSWORD).status_code == 429
    travel(2)
    assert logged_in(attempt("bob", PASSWORD))


def test_failures_while_locked_out_neither_count_nor_extend_the_lockout(operator):
    fail("bob", 5)
    fail("bob", 10)
    assert AccessFailureLog.objects.filter(username="bob").count() == 5
    travel(6)
    assert logged_in(attempt("bob", PASSWORD))


def test_an_attempt_refused_by_the_lockout_is_recorded_as_locked_out(operator):
    fail("bob", 5)
    attempt("bob", PASSWORD)
    attempt("nobody-here", "not the password 1")
    fail("nobody-here", 5)
    reasons = list(
        AuditEvent.objects.filter(action="auth.login_failed")
        .order_by("id")
        .values_list("extra__reason", flat=True)
    )
    assert reasons[:5] == ["wrong password"] * 5
    assert reasons[5] == "locked out"  # the right password, never checked
    assert reasons[6:11] == ["unknown user"] * 5
    assert reasons[11:] == ["locked out"]


def test_repeated_lockouts_within_a_day_last_an_hour_and_then_a_day(operator):
    fail("bob", 5)
    assert username_lock("bob").duration == timedelta(minutes=5)  # type: ignore[union-attr]
    travel(6)
    response = fail("bob", 5)
    assert username_lock("bob").duration == timedelta(hours=1)  # type: ignore[union-attr]
    assert "Try again in 60 minutes." in response.content.decode()
    travel(61)
    response = fail("bob", 5)
    assert username_lock("bob").duration == timedelta(hours=24)  # type: ignore[union-attr]
    assert "Try again in 24 hours." in response.content.decode()
    travel(23 * 60)
    assert attempt("bob", PASSWORD).status_code == 429
    travel(61)
    assert logged_in(attempt("bob", PASSWORD))


def test_a_lockout_more_than_a_day_after_the_last_is_short_again(operator):
    fail("bob", 5)
    travel(25 * 60)
    fail("bob", 5)
    assert username_lock("bob").duration == timedelta(minutes=5)  # type: ignore[union-attr]


def test_failures_spread_beyond_the_window_do_not_add_up(operator):
    fail("bob", 4)
    travel(61)
    fail("bob", 4)
    assert username_lock("bob") is None


def test_a_successful_login_starts_the_count_over(operator):
    fail("bob", 4)
    assert logged_in(attempt("bob", PASSWORD))
    fail("bob", 4)
    assert username_lock("bob") is None
    assert logged_in(attempt("bob", PASSWORD))


def test_an_unknown_username_and_a_wrong_password_get_the_same_answer(operator):
    statuses = []
    for _ in range(5):
        known, unknown = fail("bob", 1), fail("nobody", 1)
        assert known.status_code == unknown.status_code
        assert page_text(known) == page_text(unknown)
        statuses.append(known.status_code)
    assert statuses == [200, 200, 200, 200, 429]


def test_a_locked_out_username_gets_the_same_page_whether_or_not_it_exists(operator):
    fail("bob", 5)
    fail("nobody", 5)
    known, unknown = attempt("bob", PASSWORD), attempt("nobody", PASSWORD)
    assert known.status_code == unknown.status_code == 429
    assert page_text(known) == page_text(unknown)
    assert known["Retry-After"] == unknown["Retry-After"] == "300"


# --- per address: a spray is stopped, an office behind one NAT is not --------------------


@pytest.fixture
def low_address_limit(settings: Any) -> None:
    settings.LOCKOUT_ADDRESS_FAILURES = 10


def test_a_password_spray_from_one_address_locks_the_address(operator, low_address_limit):
    for n in range(10):
        fail(f"guess{n}", 1)
    assert address_lock(OFFICE) is not None
    assert username_lock("guess1") is None
    # Everyone at that address waits; elsewhere nobody notices.
    assert attempt("bob", PASSWORD).status_code == 429
    assert logged_in(attempt("bob", PASSWORD, ip=HOME))


def test_a_spray_locks_the_address_for_unknown_names_but_not_for_a_member_who_logged_in_there(
    operator, low_address_limit
):
    assert logged_in(attempt("bob", PASSWORD))
    travel(60 * 24 * 20)  # twenty days ago: the member is known at this address
    for n in range(10):
        fail(f"guess{n}", 1)
    assert address_lock(OFFICE) is not None
    assert address_lock(OFFICE, username="bob") is None
    assert attempt("guess99", PASSWORD).status_code == 429
    # One machine behind the office NAT does not lock the office's members out.
    assert logged_in(attempt("bob", PASSWORD))


def test_a_login_from_the_address_more_than_thirty_days_ago_does_not_exempt(
    operator, low_address_limit
):
    assert logged_in(attempt("bob", PASSWORD))
    travel(60 * 24 * 31)
    for n in range(10):
        fail(f"guess{n}", 1)
    assert attempt("bob", PASSWORD).status_code == 429


def test_many_people_behind_one_address_with_a_few_typos_each_are_not_locked_out(
    project, low_address_limit
):
    people = [make_member(project, f"op{n}", "operator").user.username for n in range(12)]
    for name in people:
        fail(name, 2)
        assert logged_in(attempt(name, PASSWORD))
    assert AccessFailureLog.objects.filter(ip_address=OFFICE).count() == 24
    assert address_lock(OFFICE) is None
    assert all(username_lock(name) is None for name in people)


def test_a_forged_forwarding_header_from_an_untrusted_peer_changes_nothing(operator):
    for n in range(5):
        attempt("bob", "wrong password 1", X_FORWARDED_FOR=f"192.0.2.{n}", HTTP_X_REAL_IP="1.2.3.4")
    addresses = set(AccessFailureLog.objects.values_list("ip_address", flat=True))
    assert addresses == {OFFICE}
    assert username_lock("bob") is not None


def test_a_trusted_proxy_names_the_client_address(operator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.1/32"]
    attempt("bob", "wrong password 1", ip="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.44")
    assert list(AccessFailureLog.objects.values_list("ip_address", flat=True)) == ["192.0.2.44"]


def test_the_forwarding_header_of_an_untrusted_peer_is_not_believed(operator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.1/32"]
    attempt("bob", "wrong password 1", ip=OFFICE, HTTP_X_FORWARDED_FOR="192.0.2.44")
    assert list(AccessFailureLog.objects.values_list("ip_address", flat=True)) == [OFFICE]


# --- second factor --------------------------------------------------------------------------


def test_wrong_second_factor_codes_count_like_wrong_passwords(operator):
    request = RequestFactory().post("/accounts/verify/", REMOTE_ADDR=OFFICE)
    fail("bob", 2)
    assert [record_second_factor_failure(request, operator.user) for _ in range(3)] == [
        False,
        False,
        True,
    ]
    assert is_locked_out(request, "bob")
    assert record_second_factor_failure(request, operator.user)
    assert AccessFailureLog.objects.filter(username="bob").count() == 5
    assert attempt("bob", PASSWORD).status_code == 429


# --- the record -----------------------------------------------------------------------------


def test_a_lockout_is_recorded_and_the_owner_told(owner, operator):
    fail("bob", 5)
    event = AuditEvent.objects.get(action="auth.lockout")
    assert event.project_id == operator.project_id
    assert (event.object_type, event.object_id) == ("user", str(operator.user_id))
    assert event.extra == {
        "username": "bob",
        "address": OFFICE,
        "scope": "username",
        "duration": "0:05",
        "level": 0,
    }
    notice = SecurityNotice.objects.get(kind="lockout")
    assert notice.project_id == operator.project_id
    assert notice.params == {"who": "bob", "duration": "0:05"}
    assert notice.event_id == event.pk


def test_a_lockout_of_an_unknown_username_is_recorded_without_telling_anyone(project, owner, phone):
    typed = phone[0]  # a number typed into the username box (reserved range, drawn now)
    fail(typed, 5)
    event = AuditEvent.objects.get(action="auth.lockout")
    assert event.project_id is None
    digits = "".join(c for c in phone[1] if c.isdigit())
    kept = "".join(c for c in event.extra["username"] if c.isdigit())
    assert digits[-7:] not in kept and "[redacted]" in event.extra["username"]
    assert not SecurityNotice.objects.exists()


def test_an_address_lockout_tells_the_owners_of_the_people_failing_there(
    owner, operator, low_address_limit
):
    fail("bob", 1)
    for n in range(9):
        fail(f"guess{n}", 1)
    event = AuditEvent.objects.get(action="auth.lockout")
    assert event.extra["scope"] == "address" and event.extra["address"] == OFFICE
    notice = SecurityNotice.objects.get(kind="lockout")
    assert notice.params["who"] == OFFICE
