"""The telephony tables are watched for writes outside the application: a call token made
usable again by SQL, a PBX secret swapped, a call's state rewritten. The application's own
writes (a call started, dialled, reported) are not flagged.

Transactional tests: on PostgreSQL the triggers are deferred and fire only at a real COMMIT.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from callvault.accounts.models import Membership
from callvault.audit.bypass import sweep_pending_changes
from callvault.audit.models import ActorKind, AuditEvent
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


def sql(statement: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


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
