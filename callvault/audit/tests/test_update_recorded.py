"""update_recorded: one object's UPDATE and its event, one round trip on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from callvault.audit.context import Actor, AuditContext, new_request_id, use_context
from callvault.audit.models import RECORDED_COLUMNS, ActorKind, AuditEvent
from callvault.audit.recorder import record_event, update_recorded
from callvault.orders.actions import do_update_order
from callvault.orders.models import Order

pytestmark = pytest.mark.django_db

IP = "203.0.113.9"  # documentation range


def context() -> Any:
    actor = Actor(ActorKind.MEMBER, "7", "anna")
    return use_context(
        AuditContext(actor=actor, ip=IP, user_agent="Firefox/140", request_id=new_request_id())
    )


def event_of(order: Order) -> dict[str, Any]:
    """The event both recorders are given in these tests."""
    return {
        "project_id": order.project_id,
        "object_type": "order",
        "object_id": order.pk,
        "object_repr": str(order),
        "changes": {"address": ["Moscow", "Tver"]},
        "extra": {"reason": "asked by the customer", "when": order.created_at},
    }


def record(order: Order, version: int, action: str = "order.test") -> int:
    return update_recorded(
        Order.objects.filter(pk=order.pk, version=version),
        {"address": "Tver", "version": version + 1},
        action,
        **event_of(order),
    )


def test_an_edit_and_its_event_travel_together_on_postgresql(order: Order) -> None:
    with CaptureQueriesContext(connection) as captured:
        do_update_order(order, {"address": "Tver"})

    writes = [
        q["sql"]
        for q in captured.captured_queries
        if "orders_order" in q["sql"] or "audit_auditevent" in q["sql"]
    ]
    if connection.vendor == "postgresql":
        (statement,) = writes
        assert statement.startswith('UPDATE "orders_order"')
        assert "; INSERT INTO audit_auditevent" in statement
    else:  # SQLite runs one statement per call: the write, then the event
        assert [w.split()[0] for w in writes] == ["UPDATE", "INSERT"]
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {"address": ["Moscow", "Tver"]}
    assert Order.objects.get(pk=order.pk).address == "Tver"


def test_a_refused_write_rolls_its_event_back(order: Order) -> None:
    before = AuditEvent.objects.count()
    with transaction.atomic():
        assert record(order, order.version + 5) == 0
        # The event travelled with the UPDATE: only the rollback takes it back.
        assert transaction.get_rollback()
    assert AuditEvent.objects.count() == before
    assert Order.objects.get(pk=order.pk).address == "Moscow"


@pytest.mark.django_db(transaction=True)
def test_outside_an_atomic_block_it_refuses_before_writing(order: Order) -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(TransactionManagementError, match="atomic"):
        record(order, order.version)
    assert AuditEvent.objects.count() == before
    assert Order.objects.get(pk=order.pk).address == "Moscow"


def test_the_event_holds_what_record_event_writes(order: Order) -> None:
    with context(), transaction.atomic():
        assert record(order, order.version) == 1
        record_event("order.test", **event_of(order))
    together, alone = AuditEvent.objects.filter(action="order.test").order_by("id")
    for column in RECORDED_COLUMNS:
        if column == "created_at":
            assert abs(together.created_at - alone.created_at) < timedelta(seconds=5)
        else:
            assert getattr(together, column) == getattr(alone, column), column
    assert together.ip == IP and together.actor_name == "anna"
    assert together.extra["when"] == order.created_at.isoformat()
    assert Order.objects.get(pk=order.pk).version == order.version + 1


@pytest.mark.skipif("connection.vendor != 'postgresql'")  # SQLite does not check lengths
def test_an_event_the_database_refuses_leaves_the_edit_unwritten(order: Order) -> None:
    # The UPDATE runs first in the same message: the failed INSERT must take it back.
    with pytest.raises(DataError), transaction.atomic():
        record(order, order.version, action="order." + "x" * 64)
    assert Order.objects.get(pk=order.pk).address == "Moscow"
    assert not AuditEvent.objects.filter(action__startswith="order.xxx").exists()
