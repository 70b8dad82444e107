"""POST /pbx/v1/resolve: the SIP proxy asks what a call token stands for. The number comes
back once, to the authenticated PBX, for the operator the token was issued to."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.telephony.models import Call, CallState, CallToken, Pbx, SipAccount
from callvault.telephony.setup_actions import do_create_pbx, do_revoke_pbx
from callvault.telephony.tests.call_support import (
    LOCAL,
    assert_no_digits_anywhere,
    bobs_phone,
    mine,
    pbx,
    pbx_post,
    press_call,
    resolve,
    sip_account,
    sip_project,
    token_of,
)
from conftest import make_project

__all__ = ["bobs_phone", "mine", "pbx", "sip_project"]

Phone = tuple[str, str]


@pytest.fixture
def token(bobs_phone: SipAccount, operator: Membership, mine: Order) -> str:
    """A token the operator's card just issued."""
    return token_of(press_call(operator, mine))


def test_the_number_comes_back_once_and_the_call_is_dialing(
    pbx: tuple[Pbx, str], token: str, phone: Phone, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    response = resolve(pbx[1], token)
    assert response.status_code == 200
    assert response.content.decode() == phone[1]
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    call = Call.objects.get()
    assert response["X-Callvault-Call"] == str(call.pk)
    assert call.state == CallState.DIALING
    assert CallToken.objects.get().used_at is not None
    dial = AuditEvent.objects.get(action="call.dial")
    assert (dial.actor_kind, dial.actor_name, dial.object_id) == (
        "pbx",
        "PBX kamailio",
        str(call.pk),
    )
    assert dial.changes == {"state": ["new", "dialing"]}
    again = resolve(pbx[1], token)
    assert (again.status_code, again.content) == (410, b"gone")
    refused = AuditEvent.objects.get(action="call.token_refused")
    assert refused.extra == {"reason": "used", "answer": 410}
    # Only the 200 body carries the number: not the refusal, the events or the log.
    assert_no_digits_anywhere(phone[1], again.content.decode(), caplog.text)


def test_an_expired_token_is_gone(pbx: tuple[Pbx, str], token: str) -> None:
    CallToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert resolve(pbx[1], token).status_code == 410
    assert Call.objects.get().state == CallState.NEW
    assert AuditEvent.objects.get(action="call.token_refused").extra["reason"] == "expired"


def test_another_operators_token_is_forbidden_and_stays_usable(
    pbx: tuple[Pbx, str], token: str, supervisor: Membership
) -> None:
    sip_account(supervisor, "1002")
    response = resolve(pbx[1], token, operator="1002")
    assert (response.status_code, response.content) == (403, b"forbidden")
    assert resolve(pbx[1], token, operator="1001").status_code == 200


def test_a_disabled_account_cannot_spend_its_token(
    pbx: tuple[Pbx, str], token: str, bobs_phone: SipAccount
) -> None:
    SipAccount.objects.filter(pk=bobs_phone.pk).update(is_active=False)
    assert resolve(pbx[1], token).status_code == 403


@pytest.mark.parametrize(
    "dialled", ["ct-" + "0" * 32, "ct-short", "+12025550123", "", "CT-" + "A" * 32]
)
def test_an_unknown_token_or_a_plain_number_is_unknown(
    pbx: tuple[Pbx, str], token: str, dialled: str
) -> None:
    response = resolve(pbx[1], dialled)
    assert (response.status_code, response.content) == (404, b"unknown")


def test_another_projects_pbx_does_not_know_the_token(pbx: tuple[Pbx, str], token: str) -> None:
    _, theirs = do_create_pbx(make_project("gamma"), "theirs", networks=LOCAL)
    assert resolve(theirs, token).status_code == 404
    assert CallToken.objects.get().used_at is None


def test_the_token_may_come_in_the_query_string(pbx: tuple[Pbx, str], token: str) -> None:
    response = HttpsClient().post(
        f"/pbx/v1/resolve?token={token}&operator=1001", HTTP_AUTHORIZATION=f"Bearer {pbx[1]}"
    )
    assert response.status_code == 200


def test_a_body_without_a_form_content_type_is_read(pbx: tuple[Pbx, str], token: str) -> None:
    response = HttpsClient().post(
        "/pbx/v1/resolve",
        f"token={token}&operator=1001",
        content_type="text/plain",
        HTTP_AUTHORIZATION=f"Bearer {pbx[1]}",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "secret", [None, "cvp_nothing_here", "Basic abc", "cvp_00000000_xyz"], ids=str
)
def test_without_a_valid_secret_it_answers_401(
    pbx: tuple[Pbx, str], token: str, secret: str | None
) -> None:
    response = resolve(secret, token) if secret else pbx_post(None, "resolve", {"token": token})
    assert response.status_code == 401 and response.content == b"unauthorized"
    assert CallToken.objects.get().used_at is None


def test_a_wrong_secret_with_a_real_prefix_and_a_revoked_one_are_refused_on_record(
    pbx: tuple[Pbx, str], token: str
) -> None:
    # From two addresses: one address's refusals are recorded once a minute.
    assert resolve(pbx[1][:-3] + "xyz", token, REMOTE_ADDR="127.0.0.2").status_code == 401
    do_revoke_pbx(pbx[0])
    assert resolve(pbx[1], token).status_code == 401
    reasons = [e.extra["reason"] for e in AuditEvent.objects.filter(action="pbx.refused")]
    assert reasons == ["wrong secret", "revoked"]
    assert all(pbx[1] not in str(e.extra) for e in AuditEvent.objects.all())


def test_outside_its_networks_the_pbx_is_forbidden(sip_project: Project, token: str) -> None:
    _, secret = do_create_pbx(sip_project, "office", networks=["192.0.2.0/24"])
    response = resolve(secret, token, REMOTE_ADDR="198.51.100.7")
    assert (response.status_code, response.content) == (403, b"forbidden")
    assert resolve(secret, token, REMOTE_ADDR="192.0.2.10").status_code == 200
    refused = AuditEvent.objects.get(action="pbx.refused")
    assert refused.extra["reason"] == "address" and refused.extra["ip"] == "198.51.100.7"


def test_a_browser_session_is_no_credential(owner: Membership, pbx: tuple[Pbx, str], token: str):
    client = HttpsClient()
    client.force_login(owner.user)
    assert client.post("/pbx/v1/resolve", {"token": token, "operator": "1001"}).status_code == 401
    assert client.get("/pbx/v1/resolve").status_code == 405


def test_the_lookup_takes_a_few_queries(
    pbx: tuple[Pbx, str], token: str, django_assert_num_queries
) -> None:
    resolve(pbx[1], token[:-1] + ("0" if token[-1] != "0" else "1"))  # warm: last_used_at
    # The PBX with the token, its call, order and account in one statement; then on
    # PostgreSQL one statement that spends it, moves the call and writes the event
    # (test_resolve_fast.py). SQLite takes those steps one by one in a savepoint; the
    # event's insert claims the changes its triggers parked.
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 6):
        assert resolve(pbx[1], token).status_code == 200


# --- Two lookups at the same moment: exactly one gets the number (PostgreSQL's row locks) ---


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="real concurrency: PostgreSQL")
def test_two_lookups_at_once_give_the_number_exactly_once(
    pbx: tuple[Pbx, str], token: str, phone: Phone
) -> None:
    barrier = threading.Barrier(2)
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def lookup() -> None:
        try:
            barrier.wait(5)
            response = resolve(pbx[1], token)
            with lock:
                answers.append((response.status_code, response.content))
        finally:
            connection.close()

    threads = [threading.Thread(target=lookup) for _ in range(2)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert time.monotonic() - start < 20
    assert sorted(code for code, _ in answers) == [200, 410]
    assert [body for code, body in answers if code == 200] == [phone[1].encode()]
    assert AuditEvent.objects.filter(action="call.dial").count() == 1
