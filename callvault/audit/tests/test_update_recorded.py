"""update_recorded: one object's UPDATE and its event; on PostgreSQL the UPDATE carries the
event and the table's trigger writes it (callvault/audit/bypass.py, RECORDED_UPDATE_KEY)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from callvault.audit.bypass import RECORDED_UPDATE_EVENT, RECORDED_UPDATE_KEY
from callvault.audit.context import Actor, AuditContext, new_request_id, use_context
from callvault.audit.models import RECORDED_COLUMNS, ActorKind, AuditEvent, PendingChange
from callvault.audit.parked import sweep_pending_changes
from callvault.audit.recorder import record_event, update_recorded
from callvault.audit.tests.bypass_support import bypass_calls, sql
from callvault.orders.actions import do_update_order
from callvault.orders.models import Order, Status

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


def test_an_edit_carries_its_event_on_postgresql(order: Order) -> None:
    with CaptureQueriesContext(connection) as captured:
        do_update_order(order, {"address": "Tver"})

    writes = [
        q["sql"]
        for q in captured.captured_queries
        if any(t in q["sql"] for t in ("orders_order", "audit_auditevent", "audit_pendingchange"))
    ]
    if connection.vendor == "postgresql":
        (statement,) = writes  # no INSERT from the application: the trigger writes it
        assert statement.startswith('UPDATE "orders_order"')
        assert "set_config" in statement
    else:  # SQLite: the event, then the write its trigger recognises; nothing to claim
        assert [w.split()[0] for w in writes] == ["INSERT", "UPDATE"]
        assert not PendingChange.objects.exists()
    event = AuditEvent.objects.get(action="order.update")
    assert event.created_at == Order.objects.get(pk=order.pk).updated_at
    assert event.changes == {"address": ["Moscow", "Tver"]}
    assert (event.object_type, event.object_id) == ("order", str(order.pk))
    assert event.project_id == order.project_id
    assert Order.objects.get(pk=order.pk).address == "Tver"


def test_a_refused_write_writes_no_event_and_rolls_back(order: Order) -> None:
    before = AuditEvent.objects.count()
    with transaction.atomic():
        assert record(order, order.version + 5) == 0
        assert transaction.get_rollback()
    assert AuditEvent.objects.count() == before
    assert Order.objects.get(pk=order.pk).address == "Moscow"


def test_only_a_table_that_takes_recorded_updates_is_accepted(order: Order) -> None:
    with transaction.atomic():
        with pytest.raises(ValueError, match="orders_status"):
            update_recorded(
                Status.objects.filter(pk=order.status_id),
                {"name": "x"},
                "status.update",
                **{**event_of(order), "object_type": "status"},
            )
        with pytest.raises(ValueError, match="'product'"):
            update_recorded(
                Order.objects.filter(pk=order.pk),
                {"address": "Tver"},
                "order.update",
                **{**event_of(order), "object_type": "product"},
            )
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
    # The event is written inside the UPDATE: its failure fails the UPDATE.
    with pytest.raises(DataError), transaction.atomic():
        record(order, order.version, action="order." + "x" * 64)
    assert Order.objects.get(pk=order.pk).address == "Moscow"
    assert not AuditEvent.objects.filter(action__startswith="order.xxx").exists()


# --- PostgreSQL: the trigger that writes the carried event ---------------------------------

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the UPDATE carries its event on PostgreSQL only"
)


def setting(name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s, true)", [name])
        (value,) = cursor.fetchone()
    return value  # type: ignore[no-any-return]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_recorded_update_queues_no_bypass_call_and_spends_its_key(order: Order) -> None:
    sql("SET track_functions = 'pl'")
    calls = bypass_calls()
    with context(), transaction.atomic():
        assert record(order, order.version) == 1
        # Spent by the statement that matched it: the next write of the row is watched.
        assert setting(RECORDED_UPDATE_KEY) == ""
        Order.objects.filter(pk=order.pk).update(attempts=4)
    assert bypass_calls() == calls + 1  # the forgotten update() only, found covered
    (event,) = AuditEvent.objects.filter(action="order.test")
    assert (event.actor_name, event.ip, event.object_id) == ("anna", IP, str(order.pk))
    assert not AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED).exists()

    with context(), transaction.atomic():
        assert record(order, order.version + 1) == 1
    assert bypass_calls() == calls + 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_key_set_by_hand_cannot_hide_a_write(order: Order) -> None:
    key = f"order:{order.project_id}:{order.pk}"
    # The key alone: the trigger finds no event to write, and the UPDATE fails with it.
    with pytest.raises(DataError), transaction.atomic():
        sql("SELECT set_config(%s, %s, true)", [RECORDED_UPDATE_KEY, key])
        sql("UPDATE orders_order SET address = 'Tver' WHERE id = %s", [order.pk])
    assert Order.objects.get(pk=order.pk).address == "Moscow"

    # The key with an event of one's own: that event is written, about this order, in its
    # project, whatever the JSON says of them; it shows in the order's history.
    forged = {
        "created_at": "2026-01-01T00:00:00+00:00",
        "actor_kind": "member",
        "actor_id": "1",
        "actor_name": "somebody",
        "action": "order.update",
        "object_type": "product",
        "object_id": "999",
        "project_id": 999,
        "object_repr": "#1",
        "changes": {},
        "extra": {},
        "user_agent": "",
        "request_id": "",
    }
    with transaction.atomic():
        sql("SELECT set_config(%s, %s, true)", [RECORDED_UPDATE_EVENT, json.dumps(forged)])
        sql("SELECT set_config(%s, %s, true)", [RECORDED_UPDATE_KEY, key])
        sql("UPDATE orders_order SET address = 'Tver' WHERE id = %s", [order.pk])
    (event,) = AuditEvent.objects.filter(actor_name="somebody")
    assert (event.object_type, event.object_id) == ("order", str(order.pk))
    assert event.project_id == order.project_id

    # A key naming another project (or another order) matches nothing: the write is
    # recorded as one outside the application.
    with transaction.atomic():
        sql("SELECT set_config(%s, %s, true)", [RECORDED_UPDATE_EVENT, json.dumps(forged)])
        sql("SELECT set_config(%s, %s, true)", [RECORDED_UPDATE_KEY, f"order:999:{order.pk}"])
        sql("UPDATE orders_order SET address = 'Tula' WHERE id = %s", [order.pk])
    (outside,) = AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED)
    assert outside.changes == {"address": ["Tver", "Tula"]}


@pytest.mark.parametrize("wrong", ["object_id", "project_id"])
def test_an_event_about_another_row_writes_nothing(order: Order, wrong: str) -> None:
    # Such an event would not be the row's: on PostgreSQL its trigger would not recognise
    # the row and the write would be taken for one outside the application.
    before = AuditEvent.objects.count()
    about = {**event_of(order), wrong: 10**9}
    with transaction.atomic():
        written = update_recorded(
            Order.objects.filter(pk=order.pk), {"address": "Tver"}, "order.test", **about
        )
        assert written == 0 and transaction.get_rollback()
    assert AuditEvent.objects.count() == before
    assert Order.objects.get(pk=order.pk).address == "Moscow"


# --- SQLite: the update that follows its event ----------------------------------------------

sqlite_only = pytest.mark.skipif(
    "connection.vendor != 'sqlite'", reason="SQLite recognises the event written before the row"
)


def parked(order: Order) -> list[PendingChange]:
    return list(PendingChange.objects.filter(object_type="order", object_id=str(order.pk)))


@sqlite_only
def test_sqlite_a_later_write_of_the_row_is_still_parked(order: Order) -> None:
    # The event covers the one UPDATE that set the row's stamp to its time, nothing after it.
    with context(), transaction.atomic():
        assert record(order, order.version) == 1
        assert parked(order) == []
        Order.objects.filter(pk=order.pk).update(attempts=4)  # a forgotten update()
        sql(
            "UPDATE orders_order SET address = 'Tula', updated_at = %s WHERE id = %s",
            ["2030-01-01 00:00:00", order.pk],
        )
    assert len(parked(order)) == 2
    assert sweep_pending_changes() == 2


@sqlite_only
def test_sqlite_only_the_connections_last_insert_covers_the_write(order: Order) -> None:
    with context(), transaction.atomic():
        event = record_event("order.test", **event_of(order))
        stamp = connection.ops.adapt_datetimefield_value(event.created_at)
        record_event("order.other", project_id=order.project_id, object_type="product", object_id=1)
        sql(
            "UPDATE orders_order SET address = 'Tver', updated_at = %s WHERE id = %s",
            [stamp, order.pk],
        )
    (change,) = parked(order)
    assert change.after is not None and change.after["address"] == "Tver"


@sqlite_only
def test_sqlite_an_event_inserted_by_hand_covers_one_write_and_shows(order: Order) -> None:
    # As a key set by hand on PostgreSQL: the write hides behind the event one chose, which
    # is in the record (and in the hash chain) like any other.
    with context(), transaction.atomic():
        event = record_event("order.update", **event_of(order))
        stamp = connection.ops.adapt_datetimefield_value(event.created_at)
        sql(
            "UPDATE orders_order SET address = 'Tver', updated_at = %s WHERE id = %s",
            [stamp, order.pk],
        )
        sql(
            "UPDATE orders_order SET address = 'Tula', updated_at = %s WHERE id = %s",
            [stamp, order.pk],
        )  # the stamp did not move: not the recorded update
    (change,) = parked(order)
    assert change.after is not None and change.after["address"] == "Tula"
    assert AuditEvent.objects.filter(pk=event.id, object_id=str(order.pk)).exists()


@sqlite_only
def test_sqlite_an_unattributed_event_covers_nothing_and_claims_nothing(
    order: Order, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep inserts unattributed events batch by batch: were they claims, a batch would
    # take the parked changes of its objects that the next batch has not recorded yet.
    monkeypatch.setattr("callvault.audit.parked.SWEEP_BATCH", 2)
    for town in ("Tver", "Tula", "Omsk", "Perm", "Ufa"):
        sql("UPDATE orders_order SET address = %s WHERE id = %s", [town, order.pk])
    assert sweep_pending_changes() == 5
    outside = AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED).order_by("id")
    assert [e.changes["address"][1] for e in outside] == ["Tver", "Tula", "Omsk", "Perm", "Ufa"]

    last = outside.last()
    assert last is not None
    stamp = connection.ops.adapt_datetimefield_value(last.created_at)
    with transaction.atomic():
        AuditEvent.objects.create(**{c: getattr(last, c) for c in RECORDED_COLUMNS})
        sql(
            "UPDATE orders_order SET address = 'Kazan', updated_at = %s WHERE id = %s",
            [stamp, order.pk],
        )
    assert len(parked(order)) == 1
