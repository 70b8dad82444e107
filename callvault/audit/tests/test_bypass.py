"""Writes that bypass the application are recorded by the database's triggers as unattributed.

Transactional tests: on PostgreSQL the triggers are deferred and fire only at a real COMMIT.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from callvault.accounts.actions import do_reset_password
from callvault.accounts.models import ApiKey, Membership, Project
from callvault.audit.audited import AUDITED_TABLES
from callvault.audit.context import Actor, acting_as
from callvault.audit.models import ActorKind, AuditEvent, PendingChange
from callvault.audit.parked import SQLITE_CLAIM_TRIGGER, sweep_pending_changes
from callvault.audit.recorder import record_event
from callvault.audit.tests.bypass_support import bypass_calls, sql
from callvault.orders.actions import do_add_item, do_change_status, do_update_order
from callvault.orders.models import Order, Product, Status

pytestmark = pytest.mark.django_db(transaction=True)

PHONE_LIKE = re.compile(r"\d(?:[\s().-]*\d){6,}")


def unattributed(object_type: str, object_id: object) -> list[AuditEvent]:
    """The unattributed events of an object (on SQLite after sweeping parked changes)."""
    sweep_pending_changes()
    return list(
        AuditEvent.objects.filter(
            actor_kind=ActorKind.UNATTRIBUTED, object_type=object_type, object_id=str(object_id)
        ).order_by("id")
    )


def db_user() -> str:
    if connection.vendor == "postgresql":
        return str(connection.settings_dict["USER"])
    return "database"


def test_a_raw_sql_update_of_an_order_records_before_after_and_the_database_user(order):
    sql("UPDATE orders_order SET customer_name = 'Somebody Else' WHERE id = %s", [order.pk])

    (event,) = unattributed("order", order.pk)
    assert event.action == "order.changed_outside_app"
    assert event.changes == {"customer_name": ["Ivan Petrov", "Somebody Else"]}
    assert event.project_id == order.project_id
    assert event.actor_name == db_user()
    assert event.extra["table"] == "orders_order"
    if connection.vendor == "postgresql":
        assert event.extra["db_user"] == db_user()
        assert "application_name" in event.extra and "client_addr" in event.extra


def test_a_raw_change_of_the_sealed_phone_shows_changed_and_no_ciphertext_or_digits(order, phone):
    old = Order.objects.get(pk=order.pk)
    sql(
        "UPDATE orders_order SET phone_sealed = %s, phone_index = %s, phone_mask = %s "
        "WHERE id = %s",
        ["cv1:k1:stolen", "f" * 64, "+7 *** ***-**-99", order.pk],
    )

    (event,) = unattributed("order", order.pk)
    assert event.changes == {
        "phone_index": "changed",
        "phone_mask": "changed",
        "phone_sealed": "changed",
    }
    text = json.dumps([event.changes, event.extra, event.object_repr])
    for secret in (old.phone_sealed, old.phone_index, old.phone_mask, "cv1:k1:stolen"):
        assert secret not in text
    assert phone[1].lstrip("+") not in text
    assert not PHONE_LIKE.search(text)


def test_phone_shaped_text_written_by_raw_sql_is_blanked_in_the_record(order, phone):
    sql("UPDATE orders_order SET address = %s WHERE id = %s", [f"call {phone[0]}", order.pk])

    (event,) = unattributed("order", order.pk)
    assert event.changes == {"address": ["Moscow", "call [redacted]"]}


def test_raw_inserts_and_deletes_are_recorded(order, project):
    item = order.items.get()
    sql(
        "INSERT INTO orders_comment (order_id, project_id, author_name, text, created_at) "
        "VALUES (%s, %s, 'x', 'planted', %s)",
        [order.pk, project.pk, timezone.now()],
    )
    sql("DELETE FROM orders_orderitem WHERE id = %s", [item.pk])
    sql(
        "INSERT INTO orders_product (project_id, sku, name, price, is_upsell, is_active) "
        "VALUES (%s, 'FREE', 'Free gift', 0, %s, %s)",
        [project.pk, False, True],
    )
    product = Product.objects.get(sku="FREE")
    sql("DELETE FROM orders_product WHERE id = %s", [product.pk])

    comment, removed = unattributed("order", order.pk)
    assert (comment.extra["table"], comment.extra["operation"]) == ("orders_comment", "INSERT")
    assert comment.changes["text"] == [None, "planted"]
    assert (removed.extra["table"], removed.extra["operation"]) == ("orders_orderitem", "DELETE")
    assert removed.changes["quantity"] == [2, None]
    assert removed.action == "order.changed_outside_app"
    created, deleted = unattributed("product", product.pk)
    assert (created.action, deleted.action) == (
        "product.created_outside_app",
        "product.deleted_outside_app",
    )
    assert created.changes["sku"] == [None, "FREE"]
    assert deleted.changes["name"] == ["Free gift", None]


def test_an_application_action_records_only_its_own_event(order, owner):
    with acting_as(Actor.member(owner.user)):
        do_update_order(order, {"customer_name": "Ivan Sidorov", "address": "Tver"})
        do_change_status(order, Status.objects.get(project=order.project, code="accepted"))
        do_add_item(order, Product.objects.get(project=order.project, sku="GIFT"), 1)

    assert unattributed("order", order.pk) == []
    assert not PendingChange.objects.exists()
    actions = AuditEvent.objects.filter(object_type="order", object_id=str(order.pk))
    assert list(actions.order_by("id").values_list("action", flat=True)) == [
        "order.create",
        "order.update",
        "order.status",
        "order.item_add",
    ]


def test_a_forgotten_queryset_update_is_recorded(order):
    Order.objects.filter(pk=order.pk).update(attempts=5)

    (event,) = unattributed("order", order.pk)
    assert event.changes == {"attempts": [0, 5]}
    if connection.vendor == "postgresql":
        assert event.extra["application_name"] is not None


def test_an_update_inside_a_transaction_that_records_the_order_is_not_flagged(order):
    with transaction.atomic():
        Order.objects.filter(pk=order.pk).update(attempts=5)
        record_event(
            "order.test", project_id=order.project_id, object_type="order", object_id=order.pk
        )

    assert unattributed("order", order.pk) == []


def test_an_event_in_another_transaction_does_not_cover_a_bypass(order):
    record_event("order.test", project_id=order.project_id, object_type="order", object_id=order.pk)
    Order.objects.filter(pk=order.pk).update(attempts=5)

    assert len(unattributed("order", order.pk)) == 1


def test_bookkeeping_changes_record_nothing(order, project, api_key, operator):
    later = timezone.now() + timedelta(minutes=5)
    Order.objects.filter(pk=order.pk).update(
        locked_by=operator.user, locked_until=later, queue_rank=3, version=7
    )
    ApiKey.objects.filter(project=project).update(last_used_at=later)
    sql("UPDATE accounts_project SET order_seq = order_seq + 1 WHERE id = %s", [project.pk])
    sql("UPDATE orders_order SET customer_name = customer_name WHERE id = %s", [order.pk])

    assert unattributed("order", order.pk) == []
    assert unattributed("api_key", ApiKey.objects.get(project=project).pk) == []
    assert unattributed("project", project.pk) == []


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_bookkeeping_alone_queues_no_call_for_the_commit(order, project, api_key, operator):
    # The update triggers' WHEN drops these at once: the hold, the queue position, the
    # version, a key's last use, the order counter, a login. Their values go through jsonb
    # and back in the WHEN; one that did not come back equal would queue a call here.
    sql("SET track_functions = 'pl'")
    before = bypass_calls()
    sql(
        "UPDATE orders_order SET locked_by_id = %s, locked_until = now() + interval '5 min', "
        "queue_rank = queue_rank + 1, version = version + 1, updated_at = now() WHERE id = %s",
        [operator.user_id, order.pk],
    )
    sql("UPDATE accounts_apikey SET last_used_at = now() WHERE project_id = %s", [project.pk])
    sql("UPDATE accounts_project SET order_seq = order_seq + 1 WHERE id = %s", [project.pk])
    sql("UPDATE accounts_user SET last_login = now() WHERE id = %s", [operator.user_id])
    assert bypass_calls() == before

    sql("UPDATE orders_order SET attempts = attempts + 1 WHERE id = %s", [order.pk])
    assert bypass_calls() == before + 1


def test_a_change_beside_bookkeeping_is_recorded_without_the_bookkeeping(order, operator):
    sql(
        "UPDATE orders_order SET customer_name = 'Somebody Else', locked_by_id = %s, "
        "queue_rank = queue_rank + 1, version = version + 1 WHERE id = %s",
        [operator.user_id, order.pk],
    )

    (event,) = unattributed("order", order.pk)
    assert event.changes == {"customer_name": ["Ivan Petrov", "Somebody Else"]}


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_column_added_later_is_watched_without_reinstalling(order):
    # SQLite's triggers name their columns, and a migration that adds one reinstalls them;
    # PostgreSQL's name only the bookkeeping, so a new column is watched as it comes.
    sql("ALTER TABLE orders_order ADD COLUMN bench_note text")
    try:
        sql("UPDATE orders_order SET bench_note = 'moved' WHERE id = %s", [order.pk])
        (event,) = unattributed("order", order.pk)
        assert event.changes == {"bench_note": [None, "moved"]}
    finally:
        sql("ALTER TABLE orders_order DROP COLUMN bench_note")


def test_a_raw_password_change_is_recorded_as_changed_and_a_login_is_not(operator):
    user = operator.user
    sql("UPDATE accounts_user SET last_login = %s WHERE id = %s", [timezone.now(), user.pk])
    assert unattributed("user", user.pk) == []

    sql("UPDATE accounts_user SET password = 'md5$planted$hash' WHERE id = %s", [user.pk])
    (event,) = unattributed("user", user.pk)
    assert event.changes == {"password": "changed"}
    assert "planted" not in json.dumps(event.changes)


def test_a_password_reset_filed_under_the_project_is_not_flagged(owner, operator):
    do_reset_password(operator, "another horse battery staple 42", acting=owner)

    assert unattributed("user", operator.user_id) == []


def test_a_raw_membership_change_is_recorded(operator):
    Membership.objects.filter(pk=operator.pk).update(can_see_phones=True)

    (event,) = unattributed("membership", operator.pk)
    assert event.changes == {"can_see_phones": [False, True]}


def test_key_rotation_is_not_flagged_but_a_swapped_ciphertext_is(own_ring, order, project):
    call_command("vault", "rotate", "--batch", "7")
    assert AuditEvent.objects.filter(action="vault.rotate").exists()
    assert unattributed("order", order.pk) == []

    sql("UPDATE orders_order SET phone_sealed = 'cv1:k2:swapped' WHERE id = %s", [order.pk])
    (event,) = unattributed("order", order.pk)
    assert event.changes == {"phone_sealed": "changed"}


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_sqlite_parks_a_bypassing_change_until_the_sweep_records_it(order):
    sql("UPDATE orders_order SET customer_name = 'Somebody Else' WHERE id = %s", [order.pk])
    parked = PendingChange.objects.get(object_type="order", object_id=str(order.pk))
    assert parked.operation == "UPDATE"
    assert not AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED).exists()

    assert sweep_pending_changes() >= 1
    assert not PendingChange.objects.exists()
    assert AuditEvent.objects.filter(action="order.changed_outside_app").count() == 1


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_sqlite_a_change_recorded_by_the_application_leaves_no_parked_row(order):
    PendingChange.objects.all().delete()
    do_update_order(order, {"customer_name": "Ivan Sidorov"})

    assert not PendingChange.objects.exists()
    assert sweep_pending_changes() == 0


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_sqlite_a_sealed_value_never_reaches_the_parked_row(order):
    sealed = Order.objects.get(pk=order.pk).phone_sealed
    sql("UPDATE orders_order SET phone_sealed = 'cv1:k1:x' WHERE id = %s", [order.pk])

    parked = PendingChange.objects.get(object_type="order", object_id=str(order.pk))
    assert sealed not in json.dumps([parked.before, parked.after])
    assert parked.after is not None and parked.after["phone_sealed"] == {"sealed": 1}


def _trigger_names() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {row[0] for row in cursor.fetchall()}


def test_every_audited_table_has_its_triggers():
    kinds = (
        ("write", "update") if connection.vendor == "postgresql" else ("insert", "update", "delete")
    )
    expected = {f"{spec.table}_bypass_{kind}" for spec in AUDITED_TABLES for kind in kinds}
    if connection.vendor == "postgresql":
        carried = {
            f"{spec.table}_recorded_update" for spec in AUDITED_TABLES if spec.recorded_updates
        }
        assert carried == {"orders_order_recorded_update"}
        expected |= carried
    else:  # an event's insert claims its object's parked changes
        expected.add(SQLITE_CLAIM_TRIGGER)
    assert expected <= _trigger_names()


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_sqlite_triggers_name_every_current_column():
    """A migration that adds a column must reinstall the triggers (bypass.reinstall)."""
    with connection.cursor() as cursor:
        for spec in AUDITED_TABLES:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE name = %s", [f"{spec.table}_bypass_update"]
            )
            trigger = cursor.fetchone()[0]
            columns = connection.introspection.get_table_description(cursor, spec.table)
            for col in columns:
                if col.name not in spec.ignored_columns:
                    assert f"'{col.name}'" in trigger, (spec.table, col.name)


def test_a_project_created_through_the_actions_is_not_flagged(project):
    assert unattributed("project", project.pk) == []
    assert Project.objects.filter(pk=project.pk).exists()
