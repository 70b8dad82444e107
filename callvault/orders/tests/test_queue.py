"""The queue hands each due order to exactly one operator, in the project's order."""

from __future__ import annotations

import random
import threading
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from callvault.accounts.models import Role
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_change_status, rank_statuses
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order, Status, StatusChange, WorkSettings
from callvault.orders.queue import (
    claim_next,
    current_order,
    do_record_no_answer,
    do_release_order,
    do_schedule_callback,
    held_or_claimed_id,
)
from conftest import make_member


def make_orders(project, count, rng=None):
    rng = rng or random.Random()
    return [
        do_create_order(project, Lead(phone=raw, name=f"c{i}")).order
        for i, raw in enumerate(fake_phone_numbers(count, rng))
    ]


@pytest.fixture(autouse=True)
def always_calling_hours(project):
    """Calling hours around the clock, unless a test narrows them."""
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=time(0, 0), calling_hours_end=time(23, 59, 59)
    )


def test_an_operator_gets_the_oldest_new_order_locked_to_them(operator, project):
    first, _second = make_orders(project, 2)
    claimed = claim_next(operator)
    assert claimed is not None and claimed == first
    claimed.refresh_from_db()
    assert claimed.locked_until is not None
    assert claimed.locked_by == operator.user
    assert claimed.locked_until > timezone.now()
    event = AuditEvent.objects.get(action="order.claim")
    assert event.object_id == str(first.pk)
    assert event.changes == {"locked_by": [None, "bob"]}


def test_two_operators_never_get_the_same_order(operator, project):
    other = make_member(project, "olga", Role.OPERATOR)
    make_orders(project, 2)
    a, b = claim_next(operator), claim_next(other)
    assert a is not None and b is not None and a != b
    assert claim_next(make_member(project, "pavel", Role.OPERATOR)) is None


def test_the_claimed_order_becomes_visible_to_the_operator_while_held(operator, project):
    (order,) = make_orders(project, 1)
    assert not Order.objects.visible_to(operator).exists()
    claim_next(operator)
    assert list(Order.objects.visible_to(operator)) == [order]
    assert current_order(operator) == order
    do_release_order(order, operator)
    assert not Order.objects.visible_to(operator).exists()
    assert AuditEvent.objects.filter(action="order.release").exists()


def test_an_abandoned_lock_returns_the_order_to_the_queue(operator, project):
    other = make_member(project, "olga", Role.OPERATOR)
    (order,) = make_orders(project, 1)
    claim_next(operator)
    assert claim_next(other) is None
    Order.objects.filter(pk=order.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert claim_next(other) == order


def test_orders_not_yet_due_wait(operator, project):
    (order,) = make_orders(project, 1)
    Order.objects.filter(pk=order.pk).update(next_call_at=timezone.now() + timedelta(hours=1))
    assert claim_next(operator) is None


def test_orders_outside_the_customers_calling_hours_wait(operator, project):
    (order,) = make_orders(project, 1)
    now_there = timezone.now().astimezone(__import__("zoneinfo").ZoneInfo(order.customer_tz))
    # Hours that end an hour before the customer's local time (and start far earlier).
    end = (now_there - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    start = (now_there - timedelta(hours=3)).time().replace(second=0, microsecond=0)
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=start, calling_hours_end=end
    )
    assert claim_next(operator) is None
    WorkSettings.objects.filter(project=project).update(
        calling_hours_end=time(23, 59, 59), calling_hours_start=time(0, 0)
    )
    assert claim_next(operator) == order


def _hours(project, start, end):
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=start.replace(second=0, microsecond=0),
        calling_hours_end=end.replace(second=0, microsecond=0),
    )


def test_calling_hours_may_run_past_midnight(operator, project):
    (order,) = make_orders(project, 1)
    local = timezone.now().astimezone(ZoneInfo(order.customer_tz))
    # A night shift from two hours ahead round the clock to one hour ahead: every time of
    # day but the next hour. Now is inside, so the order is due...
    _hours(project, (local + timedelta(hours=2)).time(), (local + timedelta(hours=1)).time())
    assert claim_next(operator) == order
    do_release_order(order, operator)
    # ...and the same shape that leaves out the current hour keeps it waiting.
    _hours(project, (local + timedelta(hours=1)).time(), (local - timedelta(hours=1)).time())
    assert claim_next(operator) is None


def test_a_customer_of_unknown_zone_is_judged_by_the_projects_zone(operator, project):
    (order,) = make_orders(project, 1)
    Order.objects.filter(pk=order.pk).update(customer_tz="")
    project.time_zone = "Asia/Kamchatka"  # far from the fake numbers' American zones
    project.save(update_fields=["time_zone"])
    operator.project.refresh_from_db()
    there = timezone.now().astimezone(ZoneInfo("Asia/Kamchatka"))
    _hours(project, (there + timedelta(hours=1)).time(), (there + timedelta(hours=3)).time())
    assert claim_next(operator) is None
    _hours(project, (there - timedelta(hours=1)).time(), (there + timedelta(hours=1)).time())
    assert claim_next(operator) == order


def test_the_project_chooses_which_class_goes_first(operator, project):
    new, retry = make_orders(project, 2)
    do_record_no_answer(retry)
    Order.objects.filter(pk=retry.pk).update(next_call_at=timezone.now() - timedelta(minutes=1))
    work = WorkSettings.objects.get(project=project)
    work.queue_priority = "retry,new,callback"
    work.save()
    rank_statuses(work)
    assert claim_next(operator) == retry
    assert claim_next(make_member(project, "olga", Role.OPERATOR)) == new


def test_no_answer_backs_off_then_gives_up(operator, project):
    (order,) = make_orders(project, 1)
    work = WorkSettings.objects.get(project=project)
    work.no_answer_backoff, work.max_attempts = "10,30", 3
    work.save()
    before = timezone.now()
    do_record_no_answer(order)
    assert order.attempts == 1 and order.status.code == "no_answer"
    assert timedelta(minutes=9) < order.next_call_at - before < timedelta(minutes=11)
    do_record_no_answer(order)
    assert timedelta(minutes=29) < order.next_call_at - before < timedelta(minutes=31)
    do_record_no_answer(order)
    order.refresh_from_db()
    assert order.status.code == "unreachable"
    assert not order.in_queue and order.next_call_at is None
    assert StatusChange.objects.filter(order=order).count() == 2
    assert AuditEvent.objects.filter(action="order.no_answer").count() == 3


def test_a_callback_goes_back_to_the_operator_who_scheduled_it(operator, project):
    other = make_member(project, "olga", Role.OPERATOR)
    (order,) = make_orders(project, 1)
    claimed = claim_next(operator)
    assert claimed is not None
    when = timezone.now() + timedelta(minutes=30)
    do_schedule_callback(claimed, when)
    claimed.refresh_from_db()
    assert (claimed.status.code, claimed.assigned_to, claimed.locked_by) == (
        "callback",
        operator.user,
        None,
    )
    Order.objects.filter(pk=order.pk).update(next_call_at=timezone.now())
    assert claim_next(other) is None
    assert claim_next(operator) == order


@pytest.mark.parametrize("delta", [timedelta(minutes=-5), timedelta(days=200)])
def test_a_callback_time_must_be_ahead_but_not_too_far(order, delta):
    with pytest.raises(FieldErrors) as exc:
        do_schedule_callback(order, timezone.now() + delta)
    assert "next_call_at" in exc.value.errors


def test_a_final_status_takes_the_order_out_of_the_queue_and_releases_it(operator, project):
    make_orders(project, 1)
    claimed = claim_next(operator)
    assert claimed is not None
    do_change_status(claimed, Status.objects.get(project=project, code="accepted"))
    claimed.refresh_from_db()
    assert not claimed.in_queue and claimed.locked_by is None
    assert claim_next(operator) is None


def test_trainees_and_supervisors_get_work_too_but_not_a_deactivated_member(
    trainee, operator, project
):
    make_orders(project, 2)
    assert claim_next(trainee) is not None
    operator.is_active = False
    assert claim_next(operator) is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_operators_claim_each_order_once(project):
    orders = make_orders(project, 30)
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=time(0, 0), calling_hours_end=time(23, 59, 59)
    )
    members = [make_member(project, f"op{i}", Role.OPERATOR) for i in range(6)]
    claims: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(members))

    def work(member):
        try:
            barrier.wait(timeout=10)
            for _ in range(10):
                order = claim_next(member)
                if order is None:
                    break
                claims.append(order.pk)
                # Finish it, so the next claim takes another one.
                Order.objects.filter(pk=order.pk).update(in_queue=False)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(claims) == len(set(claims)) == len(orders)


def test_opening_the_card_renews_the_operators_hold(operator, project):
    from conftest import login

    (order,) = make_orders(project, 1)
    claim_next(operator)
    soon = timezone.now() + timedelta(minutes=1)
    Order.objects.filter(pk=order.pk).update(locked_until=soon)
    assert login(operator).get(f"/p/{project.slug}/orders/{order.pk}/").status_code == 200
    order.refresh_from_db()
    assert order.locked_until is not None
    assert order.locked_until > timezone.now() + timedelta(minutes=10)


def test_a_callback_goes_to_the_member_who_agreed_it_not_a_stale_holder(
    operator, supervisor, project
):
    from callvault.audit.context import acting_as
    from callvault.audit.middleware import member_actor

    make_orders(project, 1)
    held = claim_next(operator)
    assert held is not None
    with acting_as(member_actor(supervisor.user)):
        do_schedule_callback(held, timezone.now() + timedelta(hours=1))
    held.refresh_from_db()
    assert held.assigned_to == supervisor.user


@pytest.mark.django_db(transaction=True)
def test_a_double_pressed_next_hands_out_one_order(operator, project):
    make_orders(project, 3)
    answers: list[tuple[int | None, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def press():
        try:
            barrier.wait(timeout=10)
            answers.append(held_or_claimed_id(operator))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=press) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert Order.objects.filter(locked_by=operator.user).count() == 1
    assert len({order_id for order_id, _held in answers}) == 1
    assert sorted(held for _id, held in answers) == [False, True, True, True]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
def test_the_claim_is_a_prepared_statement_on_postgresql(operator, project):
    make_orders(project, 2)
    assert claim_next(operator) is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any("SKIP LOCKED" in s for s in statements), statements
