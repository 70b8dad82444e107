"""The operator queue: each due order goes to exactly one operator, in the project's order.

An order waits in the queue while its status is a queued processing status (`in_queue`);
it is due when its next-call time has come and the customer's local time is inside the
project's calling hours. Claiming locks it to the operator for a while; an abandoned lock
simply expires. On PostgreSQL the claim is one statement (`FOR UPDATE SKIP LOCKED` inside an
UPDATE that also writes the audit event); on SQLite the transaction holds the database's
write lock (BEGIN IMMEDIATE), so a plain conditional update cannot race.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from callvault.accounts.models import Membership
from callvault.audit.context import current
from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import (
    StaleOrder,
    _order_state,
    _save_order,
    acting_user_id,
    record_status_change,
)
from callvault.orders.models import Order, QueueClass, Status, WorkSettings


def work_settings(project_id: int) -> WorkSettings:
    """The project's work settings (every project gets them with its statuses)."""
    return WorkSettings.objects.select_related("status_after_max_attempts").get(
        project_id=project_id
    )


@lru_cache(maxsize=64)
def _zones_in_hours(start: time, end: time, utc_minute: datetime) -> tuple[str, ...]:
    zones = []
    for name in available_timezones():
        local = utc_minute.astimezone(ZoneInfo(name)).time()
        inside = start <= local < end if start <= end else (local >= start or local < end)
        if inside:
            zones.append(name)
    return tuple(sorted(zones))


def callable_zones(work: WorkSettings, project_tz: str, now: datetime) -> list[str]:
    """Time zones where it is now within calling hours ("" = unknown, judged by the
    project's own zone). Cached per minute: ~600 zones take a millisecond to check."""
    minute = now.replace(second=0, microsecond=0)
    zones = list(_zones_in_hours(work.calling_hours_start, work.calling_hours_end, minute))
    if project_tz in zones:
        zones.append("")
    return zones


# The customer's local time, computed by PostgreSQL only for the few rows the index walk
# visits (an unknown zone is judged by the project's own). Zone names are checked against
# the system zone database when they are written (vault.phones.parse_phone).
_LOCAL_TIME = "(%(now)s AT TIME ZONE COALESCE(NULLIF(o.customer_tz, ''), %(ptz)s))::time"

# One statement: read the project's work rules, pick, lock and record. SKIP LOCKED lets 50
# operators claim side by side without waiting on each other's rows; the partial index
# keeps the walk short. Reading the rules here rather than before saves a round trip, and
# computing the local time here saves binding the ~600 zone names that are in hours now.
_CLAIM_SQL = f"""
    WITH ws AS (
        SELECT calling_hours_start AS hs, calling_hours_end AS he,
               %(now)s + make_interval(mins => lock_minutes) AS until
        FROM orders_worksettings WHERE project_id = %(project)s
    ), picked AS (
        SELECT o.id FROM orders_order o, ws
        WHERE o.project_id = %(project)s AND o.in_queue AND o.next_call_at <= %(now)s
          AND (o.locked_until IS NULL OR o.locked_until < %(now)s)
          AND (o.assigned_to_id IS NULL OR o.assigned_to_id = %(user)s)
          AND CASE WHEN ws.hs <= ws.he
              THEN {_LOCAL_TIME} >= ws.hs AND {_LOCAL_TIME} < ws.he
              ELSE {_LOCAL_TIME} >= ws.hs OR {_LOCAL_TIME} < ws.he
              END
        ORDER BY o.queue_rank, o.next_call_at, o.id
        LIMIT 1
        FOR UPDATE OF o SKIP LOCKED
    ), claimed AS (
        UPDATE orders_order o SET locked_by_id = %(user)s, locked_until = ws.until
        FROM picked, ws WHERE o.id = picked.id
        RETURNING o.id, o.number, o.locked_until
    )
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id,
        actor_name, action, object_type, object_id, object_repr, changes, extra, ip,
        user_agent, request_id)
    SELECT %(now)s, %(project)s, %(kind)s, %(actor_id)s, %(actor_name)s, 'order.claim',
        'order', claimed.id::text, '#' || claimed.number, %(changes)s::jsonb,
        jsonb_build_object('until', claimed.locked_until), %(ip)s, %(ua)s, %(request_id)s
    FROM claimed
    RETURNING object_id
"""  # noqa: S608 (built from this module's constants, no input)


def _claim_params(member: Membership, now: datetime) -> dict[str, Any]:
    """The parameters of `_CLAIM_SQL` for this member at this moment."""
    ctx = current()
    return {
        "project": member.project_id,
        "now": now,
        "ptz": member.project.time_zone,
        "user": member.user_id,
        "kind": ctx.actor.kind,
        "actor_id": ctx.actor.id[:64],
        "actor_name": ctx.actor.name[:200],
        "changes": json.dumps({"locked_by": [None, member.user.username]}),
        "ip": ctx.ip,
        "ua": ctx.user_agent[:400],
        "request_id": ctx.request_id,
    }


def _claim_postgresql(member: Membership, now: datetime) -> int | None:
    import psycopg  # only installed with the postgres extra

    connection.ensure_connection()
    raw = connection.connection
    # A server-side binding cursor on Django's own connection (so the same transaction),
    # prepared once per connection: every operator presses Next hundreds of times a day,
    # and parsing and planning this statement costs more than running it. Django opens
    # its connections with prepare_threshold None, which makes psycopg ignore prepare=True;
    # Django's own cursors bind on the client and are never prepared, so setting it here
    # changes nothing else.
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 5
    with psycopg.Cursor(raw) as cursor:
        row = cursor.execute(_CLAIM_SQL, _claim_params(member, now), prepare=True).fetchone()
    return int(row[0]) if row else None


def _claim_sqlite(member: Membership, now: datetime) -> int | None:
    work = work_settings(member.project_id)
    until = now + timedelta(minutes=work.lock_minutes)
    zones = callable_zones(work, member.project.time_zone, now)
    due = (
        Order.objects.filter(
            project_id=member.project_id,
            in_queue=True,
            next_call_at__lte=now,
            customer_tz__in=zones,
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .filter(Q(assigned_to__isnull=True) | Q(assigned_to_id=member.user_id))
        .order_by("queue_rank", "next_call_at", "id")
    )
    with transaction.atomic():  # BEGIN IMMEDIATE: the write lock is ours until commit
        picked = due.values_list("id", "number").first()
        if picked is None:
            return None
        claimed = (
            Order.objects.filter(pk=picked[0])
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .update(locked_by_id=member.user_id, locked_until=until)
        )
        if claimed != 1:
            return None
        record_event(
            "order.claim",
            project_id=member.project_id,
            object_type="order",
            object_id=picked[0],
            object_repr=f"#{picked[1]}",
            changes={"locked_by": [None, member.user.username]},
            extra={"until": until.isoformat()},
        )
    return int(picked[0])


def claim_next_id(member: Membership) -> int | None:
    """Lock the next due order to the member and return its id; None when nothing is due."""
    if not member.is_active or not member.can_edit_orders:
        return None
    claim = _claim_postgresql if connection.vendor == "postgresql" else _claim_sqlite
    return claim(member, timezone.now())


def claim_next(member: Membership) -> Order | None:
    """Hand the member the next due order, locked to them; None when nothing is due."""
    order_id = claim_next_id(member)
    if order_id is None:
        return None
    return Order.objects.select_related("project", "status").get(pk=order_id)


def current_order(member: Membership) -> Order | None:
    """The order the member holds now, if any (they finish it before taking another)."""
    return (
        Order.objects.select_related("project", "status")
        .filter(
            project_id=member.project_id,
            locked_by_id=member.user_id,
            locked_until__gt=timezone.now(),
        )
        .order_by("locked_until")
        .first()
    )


def held_or_claimed_id(member: Membership) -> tuple[int | None, bool]:
    """The order the member still holds (and True), else a newly claimed one (and False).

    A double-pressed Next sends two requests at once: both would find nothing held and
    each claim an order. The member's own row lock (PostgreSQL; SQLite's write lock is
    taken at BEGIN) makes the second wait for the first and then find its order held.
    """
    with transaction.atomic():
        Membership.objects.select_for_update().filter(pk=member.pk).values_list("pk").first()
        held = current_order(member)
        if held is not None:
            return held.pk, True
        return claim_next_id(member), False


def extend_hold(order: Order, member: Membership) -> None:
    """Keep a held order with the operator while they work on it: every card view renews
    the lock, so a long call does not hand the order to someone else mid-conversation."""
    now = timezone.now()
    if order.locked_by_id != member.user_id or not order.locked_until or order.locked_until <= now:
        return
    until = now + timedelta(minutes=work_settings(order.project_id).lock_minutes)
    Order.objects.filter(pk=order.pk, locked_by_id=member.user_id, locked_until__gt=now).update(
        locked_until=until
    )
    order.locked_until = until


@transaction.atomic
def do_release_order(order: Order, member: Membership) -> None:
    """Give a held order back to the queue unchanged."""
    updated = Order.objects.filter(pk=order.pk, locked_by_id=member.user_id).update(
        locked_by=None, locked_until=None
    )
    if updated:
        record_event(
            "order.release",
            project_id=order.project_id,
            object_type="order",
            object_id=order.pk,
            object_repr=str(order),
            changes={"locked_by": [member.user.username, None]},
        )


def _status_of_class(project_id: int, queue_class: str) -> Status:
    status = (
        Status.objects.filter(project_id=project_id, queue_class=queue_class, is_active=True)
        .order_by("position", "id")
        .first()
    )
    if status is None:
        raise FieldErrors.one("status", f"the project has no active {queue_class} status")
    return status


@transaction.atomic
def do_record_no_answer(order: Order, *, expected_version: int | None = None) -> Order:
    """The customer did not answer: count the attempt and call again after the project's
    back-off, or give up with the configured status after the last attempt."""
    work = work_settings(order.project_id)
    before = _order_state(order)
    order.attempts += 1
    order.locked_by, order.locked_until = None, None
    give_up = order.attempts >= work.max_attempts and work.status_after_max_attempts
    if give_up:
        new_status = work.status_after_max_attempts
        assert new_status is not None
        order.next_call_at = None
    else:
        new_status = _status_of_class(order.project_id, QueueClass.RETRY)
        delays = work.backoff_minutes()
        delay = delays[min(order.attempts, len(delays)) - 1]
        order.next_call_at = timezone.now() + timedelta(minutes=delay)
    return _finish(order, before, new_status, "order.no_answer", expected_version)


MAX_CALLBACK_DAYS = 90


@transaction.atomic
def do_schedule_callback(
    order: Order, when: datetime, *, expected_version: int | None = None
) -> Order:
    """Call the customer back at a time they chose; the callback stays with this operator."""
    now = timezone.now()
    if timezone.is_naive(when):
        raise FieldErrors.one("next_call_at", "a date and time with a time zone is required")
    if when <= now:
        raise FieldErrors.one("next_call_at", "the callback time must be in the future")
    if when > now + timedelta(days=MAX_CALLBACK_DAYS):
        raise FieldErrors.one("next_call_at", f"at most {MAX_CALLBACK_DAYS} days ahead")
    before = _order_state(order)
    status = _status_of_class(order.project_id, QueueClass.CALLBACK)
    # The callback stays with the member who agreed it with the customer (the actor), or
    # with whoever holds the order when it is scheduled outside a member's request.
    scheduler = acting_user_id() or order.locked_by_id
    order.next_call_at = when
    if scheduler is not None:
        order.assigned_to_id = scheduler
    order.locked_by, order.locked_until = None, None
    return _finish(order, before, status, "order.callback", expected_version)


def _finish(
    order: Order,
    before: dict[str, object],
    status: Status,
    action: str,
    expected_version: int | None,
) -> Order:
    previous = order.status
    order.status = status
    saved = _save_order(order, dict(before), action=action, expected_version=expected_version)
    record_status_change(order, previous, status)
    return saved


__all__ = [
    "StaleOrder",
    "claim_next",
    "claim_next_id",
    "current_order",
    "do_record_no_answer",
    "do_release_order",
    "do_schedule_callback",
]
