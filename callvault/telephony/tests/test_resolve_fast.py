"""The token lookup's fast path (docs/benchmarks.md, "Token resolution"): how few statements
it runs, the prepared statement on PostgreSQL, the audit event it writes in SQL, what the
bypass triggers make of it, "last used" written once a minute, and everything it must still
refuse."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from callvault.accounts.models import Membership
from callvault.audit.context import Actor, acting_as
from callvault.audit.models import AuditEvent
from callvault.audit.parked import sweep_pending_changes
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.telephony.actions import do_start_call
from callvault.telephony.models import Call, CallState, CallToken, Pbx, SipAccount
from callvault.telephony.pbx_auth import authenticate_pbx_with
from callvault.telephony.tests.call_support import (
    assert_no_digits_anywhere,
    bobs_phone,
    mine,
    pbx,
    press_call,
    resolve,
    sip_project,
    token_of,
)

__all__ = ["bobs_phone", "mine", "pbx", "sip_project"]

Phone = tuple[str, str]
POSTGRESQL = connection.vendor == "postgresql"
UNKNOWN_TOKEN = "ct-" + "0" * 32


@pytest.fixture
def token(bobs_phone: SipAccount, operator: Membership, mine: Order) -> str:
    """A token the operator's card just issued."""
    return token_of(press_call(operator, mine))


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries]


def unattributed() -> list[AuditEvent]:
    """Writes the bypass triggers saw without the application's record (SQLite: swept)."""
    sweep_pending_changes()
    return list(AuditEvent.objects.filter(actor_kind="unattributed"))


# --- How few statements ---------------------------------------------------------------------


def test_a_lookup_reads_the_pbx_with_the_token_then_spends_it_in_one_statement(
    pbx: tuple[Pbx, str], token: str
) -> None:
    resolve(pbx[1], UNKNOWN_TOKEN)  # "last used" is written by this first request
    with CaptureQueriesContext(connection) as seen:
        assert resolve(pbx[1], token).status_code == 200
    sql = [" ".join(s.split()) for s in statements(seen)]
    assert sql[0].startswith("SELECT pbx.*, ride.* FROM (SELECT id, project_id, name, prefix")
    assert "FROM telephony_pbx WHERE prefix" in sql[0]
    assert "FROM telephony_calltoken t" in sql[0] and "WHERE t.token_hash" in sql[0]
    if POSTGRESQL:
        assert len(sql) == 2, sql
        for part in ("UPDATE telephony_calltoken", "UPDATE telephony_call ", "INSERT INTO audit"):
            assert part in sql[1]
    else:
        # In a savepoint: both updates and the event, whose insert claims what they parked.
        assert len(sql) == 6, sql
        assert not any("audit_pendingchange" in s for s in sql), sql


def test_a_token_read_beside_a_refused_pbx_is_neither_spent_nor_told(
    pbx: tuple[Pbx, str], token: str
) -> None:
    """The token is read in the PBX's statement, before the PBX is authenticated: what it
    found goes nowhere unless the PBX passes (secret, revocation, networks)."""
    wrong_secret = pbx[1][:-4] + ("aaaa" if not pbx[1].endswith("aaaa") else "bbbb")
    outsider = resolve(pbx[1], token, REMOTE_ADDR="198.51.100.7")
    answers = [resolve(wrong_secret, token), outsider]
    assert [a.status_code for a in answers] == [401, 403]
    assert all(a.content in (b"unauthorized", b"forbidden") for a in answers)
    assert CallToken.objects.get().used_at is None
    assert Call.objects.get().state == CallState.NEW
    assert not AuditEvent.objects.filter(action__startswith="call.").exclude(action="call.start")
    # The right PBX from its network still gets the number, once.
    assert resolve(pbx[1], token).status_code == 200


def test_a_request_without_a_pbx_secrets_shape_is_refused_before_its_body_is_read(
    db: Any,
) -> None:
    built: list[str] = []

    def ride_for(request: Any) -> None:
        built.append(request.META.get("HTTP_AUTHORIZATION", ""))

    factory = RequestFactory()
    for header in ("", "Bearer nothing-like-it", "Bearer cvp_deadbeef_x"):
        request = factory.post("/pbx/v1/resolve", {"token": UNKNOWN_TOKEN})
        if header:
            request.META["HTTP_AUTHORIZATION"] = header
        answer = authenticate_pbx_with(request, ride_for)
        assert isinstance(answer, HttpResponse) and answer.status_code == 401
    assert built == ["Bearer cvp_deadbeef_x"]  # an unknown prefix costs the one statement


def test_a_refusal_adds_only_its_event(pbx: tuple[Pbx, str], token: str) -> None:
    assert resolve(pbx[1], token).status_code == 200
    with CaptureQueriesContext(connection) as seen:
        assert resolve(pbx[1], token).status_code == 410
    sql = statements(seen)
    assert not any("UPDATE" in s for s in sql), sql
    assert sum(s.startswith("INSERT INTO audit_auditevent") for s in sql) == 1
    # The PBX with the token, and the event (on SQLite its insert claims parked changes).
    assert len(sql) == 2, sql


def test_a_plain_number_costs_no_token_lookup(pbx: tuple[Pbx, str], token: str) -> None:
    resolve(pbx[1], UNKNOWN_TOKEN)
    with CaptureQueriesContext(connection) as seen:
        assert resolve(pbx[1], "+12025550123").status_code == 404
    # The PBX and the refusal's event (on SQLite its insert claims parked changes).
    assert len(statements(seen)) == 2, statements(seen)


@pytest.mark.skipif(not POSTGRESQL, reason="prepared statements: PostgreSQL")
def test_the_lookups_statements_are_prepared_on_postgresql(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    for _ in range(6):  # psycopg prepares a statement on its fifth run
        with acting_as(Actor.member(operator.user)):
            started = do_start_call(operator, mine)[1]
        token = started.sip_uri.removeprefix("sip:").split("@")[0]
        assert resolve(pbx[1], token).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    for part in ("FROM telephony_pbx WHERE prefix", "WHERE t.token_hash", "UPDATE telephony_call "):
        assert any(part in sql for sql in prepared), (part, prepared)
    # Prepared, the statements still reach Django's query log with their text.
    with CaptureQueriesContext(connection) as seen:
        assert resolve(pbx[1], token).status_code == 410
    assert all(isinstance(sql, str) and sql for sql in statements(seen))


@pytest.mark.skipif(not POSTGRESQL, reason="connection health checks: PostgreSQL")
def test_the_pbx_read_stands_in_for_the_connections_health_check(
    pbx: tuple[Pbx, str], token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reused connection is checked before each request (CONN_HEALTH_CHECKS): a
    `SELECT 1` round trip of its own, unless the request's first statement is the PBX's
    read, which proves the connection as well."""
    db: Any = connection  # the health check's flags: not in django-stubs
    assert db.health_check_enabled
    resolve(pbx[1], UNKNOWN_TOKEN)
    checks: list[bool] = []
    usable = connection.is_usable

    def counted() -> bool:
        checks.append(True)
        return usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    db.health_check_done = False  # as at the start of every request
    assert resolve(pbx[1], token).status_code == 200
    assert checks == []
    assert db.health_check_done


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not POSTGRESQL, reason="a backend ended by the server: PostgreSQL")
def test_a_connection_that_died_between_requests_is_replaced_for_the_lookup(
    pbx: tuple[Pbx, str], token: str, phone: Phone
) -> None:
    """What the health check is for still holds: the server ended the connection since the
    last request (a restart, an idle timeout); the lookup's read finds it dead, and the
    read runs again on a new connection."""
    resolve(pbx[1], UNKNOWN_TOKEN)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (dead,) = cursor.fetchone()
    with _other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dead])
    db: Any = connection  # the health check's flags: not in django-stubs
    db.health_check_done = False  # a new request on the reused connection
    answer = resolve(pbx[1], token)
    assert (answer.status_code, answer.content.decode()) == (200, phone[1])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != dead
    assert AuditEvent.objects.filter(action="call.dial").count() == 1


@contextmanager
def _other_connection() -> Iterator[Any]:
    """A second connection to the same database, beside Django's."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        yield other


@pytest.mark.skipif(not POSTGRESQL, reason="the bypass function: PostgreSQL")
def test_the_token_triggers_find_the_calls_project_without_an_execute(db: Any) -> None:
    """An EXECUTE is planned on every call: the sources of projects in use are read with
    statements whose plans plpgsql keeps (audit migration 0007)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'callvault_audit_bypass'")
        (source,) = cursor.fetchone()
    body = " ".join(source.split())
    for table, column in (("telephony_call", "id"), ("accounts_membership", "user_id")):
        assert f"INTO more FROM {table} WHERE {column} = obj_id::bigint" in body, table


# --- The record ----------------------------------------------------------------------------


def test_the_event_written_in_sql_is_what_record_event_writes(
    pbx: tuple[Pbx, str], token: str
) -> None:
    response = resolve(pbx[1], token, HTTP_USER_AGENT="kamailio 5.8")
    assert response.status_code == 200
    call = Call.objects.get()
    dial = AuditEvent.objects.get(action="call.dial")
    assert (dial.actor_kind, dial.actor_id, dial.actor_name) == (
        "pbx",
        str(pbx[0].pk),
        "PBX kamailio",
    )
    assert (dial.project_id, dial.object_type, dial.object_id) == (
        call.project_id,
        "call",
        str(call.pk),
    )
    assert dial.object_repr == f"call {call.pk}"
    assert dial.changes == {"state": ["new", "dialing"]}
    assert dial.extra == {"sip_account": "1001"}
    assert (dial.ip, dial.user_agent) == ("127.0.0.1", "kamailio 5.8")
    assert dial.request_id == response["X-Request-ID"]
    if POSTGRESQL:  # one statement: one moment, one transaction
        assert dial.created_at == CallToken.objects.get().used_at
        assert dial.txid is not None


def test_a_call_that_moved_on_is_dialled_without_a_state_change(
    pbx: tuple[Pbx, str], token: str
) -> None:
    Call.objects.update(state=CallState.RINGING)
    assert resolve(pbx[1], token).status_code == 200
    assert Call.objects.get().state == CallState.RINGING
    assert AuditEvent.objects.get(action="call.dial").changes == {}


@pytest.mark.django_db(transaction=True)
def test_the_bypass_triggers_see_every_write_of_a_lookup_recorded(
    pbx: tuple[Pbx, str], token: str, operator: Membership, mine: Order
) -> None:
    """At COMMIT (PostgreSQL) or in the sweep (SQLite) the token's and the call's changes
    are found recorded; the same change made outside the application is not."""
    assert resolve(pbx[1], token).status_code == 200
    assert resolve(pbx[1], token).status_code == 410
    assert unattributed() == []
    CallToken.objects.update(used_at=None)  # what someone would do to dial it again
    assert [e.object_id for e in unattributed()] == [str(Call.objects.get().pk)]


@pytest.mark.django_db(transaction=True)
def test_last_used_is_written_at_most_once_a_minute(pbx: tuple[Pbx, str], token: str) -> None:
    def touches() -> int:
        with CaptureQueriesContext(connection) as seen:
            resolve(pbx[1], UNKNOWN_TOKEN)
        return sum(sql.startswith("UPDATE telephony_pbx") for sql in statements(seen))

    assert touches() == 1
    first = Pbx.objects.get().last_used_at
    assert first is not None
    assert [touches(), touches()] == [0, 0]
    Pbx.objects.update(last_used_at=first - timedelta(minutes=2))
    assert touches() == 1
    assert Pbx.objects.get().last_used_at > first  # type: ignore[operator]
    # Bookkeeping: nothing recorded for it, and nothing missing.
    assert [e for e in unattributed() if e.object_type == "pbx"] == []


# --- Still refused -------------------------------------------------------------------------


def test_an_inactive_membership_cannot_spend_its_accounts_token(
    pbx: tuple[Pbx, str], token: str, operator: Membership
) -> None:
    Membership.objects.filter(pk=operator.pk).update(is_active=False)
    assert resolve(pbx[1], token).status_code == 403
    assert CallToken.objects.get().used_at is None


@pytest.mark.parametrize("revoked", ["account", "membership"])
def test_a_deactivation_between_the_read_and_the_spend_spends_nothing(
    pbx: tuple[Pbx, str],
    token: str,
    bobs_phone: SipAccount,
    operator: Membership,
    monkeypatch: pytest.MonkeyPatch,
    revoked: str,
) -> None:
    """The spend checks again what the read found: an account or member deactivated while
    the number was being opened (another request, committed in between) gets nothing."""
    from callvault.vault.phones import open_phone

    def open_then_revoke(*args: Any, **kwargs: Any) -> str:
        if revoked == "account":
            SipAccount.objects.filter(pk=bobs_phone.pk).update(is_active=False)
        else:
            Membership.objects.filter(pk=operator.pk).update(is_active=False)
        return open_phone(*args, **kwargs)

    monkeypatch.setattr("callvault.telephony.actions.open_phone", open_then_revoke)
    assert resolve(pbx[1], token).status_code == 410
    assert CallToken.objects.get().used_at is None
    assert Call.objects.get().state == CallState.NEW
    assert not AuditEvent.objects.filter(action="call.dial").exists()


def test_an_order_that_lost_its_number_leaves_the_token_unspent(
    pbx: tuple[Pbx, str], token: str, mine: Order
) -> None:
    Order.objects.filter(pk=mine.pk).update(phone_sealed="")
    assert (resolve(pbx[1], token).status_code, CallToken.objects.get().used_at) == (410, None)
    refused = AuditEvent.objects.get(action="call.token_refused")
    assert refused.extra == {"reason": "no_number", "answer": 410}


def test_when_the_vault_cannot_open_the_number_nothing_is_spent(
    pbx: tuple[Pbx, str], token: str, mine: Order
) -> None:
    """The number is opened before the lookup commits: a ciphertext the vault cannot open
    (here: tampered) leaves the token, the call and the record as they were."""
    fmt, kid, body = Order.objects.get(pk=mine.pk).phone_sealed.split(":", 2)
    tampered = f"{fmt}:{kid}:{body[:10]}{'B' if body[10] == 'A' else 'A'}{body[11:]}"
    Order.objects.filter(pk=mine.pk).update(phone_sealed=tampered)
    client = HttpsClient(raise_request_exception=False)
    answer = client.post(
        "/pbx/v1/resolve",
        {"token": token, "operator": "1001"},
        HTTP_AUTHORIZATION=f"Bearer {pbx[1]}",
    )
    assert answer.status_code == 500
    assert CallToken.objects.get().used_at is None
    assert Call.objects.get().state == CallState.NEW
    assert not AuditEvent.objects.filter(action="call.dial").exists()


def test_no_statement_or_log_line_of_a_lookup_carries_the_number(
    pbx: tuple[Pbx, str], token: str, phone: Phone, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    with CaptureQueriesContext(connection) as seen:
        answer = resolve(pbx[1], token)
        again = resolve(pbx[1], token)
    assert answer.content.decode() == phone[1]
    assert_no_digits_anywhere(phone[1], *statements(seen), caplog.text, again.content.decode())


# --- Many lookups of one token at once (PostgreSQL's row locks) -----------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not POSTGRESQL, reason="real concurrency: PostgreSQL")
def test_of_six_lookups_at_once_exactly_one_gets_the_number(
    pbx: tuple[Pbx, str], token: str, phone: Phone
) -> None:
    lookups = 6
    barrier = threading.Barrier(lookups)
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def lookup() -> None:
        try:
            barrier.wait(10)
            response = resolve(pbx[1], token)
            with lock:
                answers.append((response.status_code, response.content))
        finally:
            connection.close()

    threads = [threading.Thread(target=lookup) for _ in range(lookups)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - start < 30
    assert sorted(code for code, _ in answers) == [200] + [410] * (lookups - 1)
    assert [body for code, body in answers if code == 200] == [phone[1].encode()]
    assert AuditEvent.objects.filter(action="call.dial").count() == 1
    refusals = AuditEvent.objects.filter(action="call.token_refused")
    assert [e.extra["reason"] for e in refusals] == ["used"] * (lookups - 1)
    assert Call.objects.get().state == CallState.DIALING
    assert CallToken.objects.get().used_at <= timezone.now()  # type: ignore[operator]
