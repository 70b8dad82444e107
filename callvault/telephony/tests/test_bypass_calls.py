"""The telephony tables are watched for writes outside the application: a call token made
usable again by SQL, a PBX secret swapped, a call's state rewritten. The application's own
writes (a call started, dialled, reported) are not flagged.

Transactional tests: on PostgreSQL the triggers are deferred and fire only at a real COMMIT.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from callvault.accounts.models import Membership
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.parked import sweep_pending_changes
from callvault.audit.tests.bypass_support import bypass_calls, sql
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallToken, Pbx, SipAccount
from callvault.telephony.tests.call_support import (
    bobs_phone,
    mine,
    pbx,
    pbx_post,
    press_call,
    resolve,
    sip_project,
    token_of,
)

__all__ = ["bobs_phone", "mine", "pbx", "sip_project"]

pytestmark = pytest.mark.django_db(transaction=True)


def unattributed(object_type: str) -> list[AuditEvent]:
    sweep_pending_changes()
    return list(
        AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED, object_type=object_type)
    )


def test_a_whole_call_through_the_application_is_not_flagged(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token = token_of(press_call(operator, mine))
    assert resolve(pbx[1], token).status_code == 200
    call = Call.objects.get()
    for name in ("answered", "ended"):
        response = pbx_post(pbx[1], "events", {"call": call.pk, "event": name}, as_json=True)
        assert response.status_code == 200
    for object_type in ("call", "pbx", "sip_account", "telephony_settings"):
        assert unattributed(object_type) == [], object_type


def test_a_spent_token_made_usable_again_by_sql_is_recorded(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token = token_of(press_call(operator, mine))
    assert resolve(pbx[1], token).status_code == 200
    row = CallToken.objects.get()
    sql("UPDATE telephony_calltoken SET used_at = NULL WHERE id = %s", [row.pk])
    (event,) = unattributed("call")
    assert event.action == "call.changed_outside_app"
    assert event.object_id == str(row.call_id)
    assert event.changes["used_at"][1] is None


def test_a_swapped_pbx_secret_is_recorded_as_changed(pbx: tuple[Pbx, str]) -> None:
    sql("UPDATE telephony_pbx SET secret_hash = %s WHERE id = %s", ["0" * 64, pbx[0].pk])
    (event,) = unattributed("pbx")
    assert event.changes == {"secret_hash": "changed"}
    assert pbx[0].secret_hash not in str(event.changes)


# --- The spend's attestation (PostgreSQL) ------------------------------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="attestation is PostgreSQL's (SQLite parks rows)"
)


@postgresql_only
def test_the_lookups_spend_queues_no_bypass_call(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token = token_of(press_call(operator, mine))
    sql("SET track_functions = 'pl'", [])
    before = bypass_calls()
    assert resolve(pbx[1], token).status_code == 200
    assert bypass_calls() == before
    assert Call.objects.get().state == "dialing"
    assert AuditEvent.objects.filter(action="call.dial").count() == 1
    # The same spend by SQL, unattested, does run it (and is recorded).
    row = CallToken.objects.get()
    sql("UPDATE telephony_calltoken SET used_at = NULL WHERE id = %s", [row.pk])
    assert bypass_calls() > before


@postgresql_only
def test_a_spend_by_sql_is_recorded_unless_its_statement_attests_it(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token_of(press_call(operator, mine))
    row = CallToken.objects.get()
    sql("UPDATE telephony_calltoken SET used_at = now() WHERE id = %s", [row.pk])
    (event,) = unattributed("call")
    assert event.changes["used_at"][0] is None
    # Attested for its own call, the same transition is dropped: the price written in
    # audit/bypass.py (ATTESTED_SETTING) for not queuing a deferred call on every lookup.
    sql("UPDATE telephony_calltoken SET used_at = NULL WHERE id = %s", [row.pk])
    seen = len(unattributed("call"))
    sql(
        "UPDATE telephony_calltoken SET used_at = now() WHERE id = %s "
        "AND set_config('callvault.attested', 'call:' || call_id, true) IS NOT NULL",
        [row.pk],
    )
    assert len(unattributed("call")) == seen


@postgresql_only
@pytest.mark.parametrize(
    "statement",
    [
        # attested for another call
        "UPDATE telephony_calltoken SET used_at = now() WHERE id = %s "
        "AND set_config('callvault.attested', 'call:0', true) IS NOT NULL",
        # attested, but the token is not only spent: its expiry moves too
        "UPDATE telephony_calltoken SET used_at = now(), expires_at = now() + interval '1 day' "
        "WHERE id = %s AND set_config('callvault.attested', 'call:' || call_id, true) "
        "IS NOT NULL",
    ],
    ids=["another_call", "more_than_the_spend"],
)
def test_an_attestation_covers_only_its_own_call_and_transition(
    statement: str,
    pbx: tuple[Pbx, str],
    bobs_phone: SipAccount,
    operator: Membership,
    mine: Order,
) -> None:
    token_of(press_call(operator, mine))
    row = CallToken.objects.get()
    sql(statement, [row.pk])
    (event,) = unattributed("call")
    assert event.changes["used_at"][0] is None


@postgresql_only
def test_an_attested_token_does_not_cover_its_call_changing_otherwise(
    pbx: tuple[Pbx, str], bobs_phone: SipAccount, operator: Membership, mine: Order
) -> None:
    token_of(press_call(operator, mine))
    call = Call.objects.get()
    with transaction.atomic():
        sql("SELECT set_config('callvault.attested', %s, true)", [f"call:{call.pk}"])
        sql("UPDATE telephony_call SET state = 'answered' WHERE id = %s", [call.pk])
    (event,) = unattributed("call")
    assert event.changes["state"] == ["new", "answered"]
