"""Writing events: `record_event` and the before -> after helpers actions use."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.db.models import sql
from django.utils import timezone

from callvault.audit.bypass import claim_pending
from callvault.audit.context import current
from callvault.audit.models import RECORDED_COLUMNS, AuditEvent

# What a sealed value looks like in a diff: the record says that it changed, never to what.
SEALED_CHANGED = "changed"


class Sealed:
    """Marks a snapshot value as secret: compared by its blind index, shown as "changed"."""

    __slots__ = ("index",)

    def __init__(self, index: str | None) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.index == self.index

    def __hash__(self) -> int:
        return hash(self.index)


def plain(value: Any) -> Any:
    """A JSON-safe form of a field value."""
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The values of `fields`, foreign keys by id, ready to diff."""
    out: dict[str, Any] = {}
    for name in fields:
        field = instance._meta.get_field(name)
        attname = getattr(field, "attname", name)
        out[name] = getattr(instance, attname)
    return out


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """{field: [before, after]} for fields that changed; sealed ones as "changed"."""
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new or (key not in before and new in ("", None)):
            continue
        if isinstance(old, Sealed) or isinstance(new, Sealed):
            changes[key] = SEALED_CHANGED
        else:
            changes[key] = [plain(old), plain(new)]
    return changes


def record_update(
    action: str,
    instance: models.Model,
    values: Mapping[str, Any],
    *,
    project_id: int | None,
    object_type: str,
    object_repr: str,
    changes_of: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = diff,
) -> dict[str, Any]:
    """Set `values` on the instance (locked by the caller, inside its transaction); when
    something changed, save those fields and record `action` with before -> after. Returns
    the changes ({} when nothing changed: nothing saved, nothing recorded)."""
    before = snapshot(instance, values)
    for name, value in values.items():
        setattr(instance, name, value)
    changes = changes_of(before, snapshot(instance, values))
    if changes:
        instance.save(update_fields=list(values))
        record_event(
            action,
            project_id=project_id,
            object_type=object_type,
            object_id=instance.pk,
            object_repr=object_repr,
            changes=changes,
        )
    return changes


# `txid` is left to its column default.
_INSERT = (
    f"INSERT INTO audit_auditevent ({', '.join(RECORDED_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join(['%s'] * len(RECORDED_COLUMNS))}) RETURNING id"
)


def _event_params(
    action: str,
    *,
    project_id: int | None,
    object_type: str,
    object_id: object,
    object_repr: str,
    changes: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], list[Any]]:
    """One event's values stamped with the current actor and request context, and the same
    values adapted for the INSERT exactly as the ORM would adapt them, in RECORDED_COLUMNS
    order."""
    ctx = current()
    ops = connection.ops
    now = timezone.now()
    values: dict[str, Any] = {
        "created_at": now,
        "project_id": project_id,
        "actor_kind": str(ctx.actor.kind),
        "actor_id": ctx.actor.id[:64],
        "actor_name": ctx.actor.name[:200],
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id) if object_id is not None else "",
        "object_repr": object_repr[:200],
        "changes": dict(changes or {}),
        "extra": {k: plain(v) for k, v in (extra or {}).items()},
        "ip": ctx.ip,
        "user_agent": ctx.user_agent[:400],
        "request_id": ctx.request_id,
    }
    adapted = {
        "created_at": ops.adapt_datetimefield_value(now),
        "changes": ops.adapt_json_value(values["changes"], None),
        "extra": ops.adapt_json_value(values["extra"], None),
        "ip": ops.adapt_ipaddressfield_value(ctx.ip),
    }
    return values, [adapted.get(column, values[column]) for column in RECORDED_COLUMNS]


def record_event(
    action: str,
    *,
    project_id: int | None,
    object_type: str = "",
    object_id: object = "",
    object_repr: str = "",
    changes: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event stamped with the current actor and request context.

    One plain INSERT rather than `objects.create()`: every action and every read that
    matters passes here, and the ORM's model machinery cost more than the insert itself
    (docs/benchmarks.md, audit cost). The values are adapted exactly as the ORM would.
    """
    values, params = _event_params(
        action,
        project_id=project_id,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        changes=changes,
        extra=extra,
    )
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, params)
        (event_id,) = cursor.fetchone()
    # SQLite's triggers parked this transaction's writes to the object; they are recorded now.
    claim_pending(object_type, values["object_id"])
    return AuditEvent(id=event_id, txid=None, **values)


def update_recorded(
    queryset: models.QuerySet[Any],
    values: Mapping[str, Any],
    action: str,
    *,
    project_id: int | None,
    object_type: str,
    object_id: object,
    object_repr: str,
    changes: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> int:
    """`queryset.update(**values)` for one object's row (the queryset picks it by primary
    key, maybe with a version check) and the event recording `action` about it. Returns the
    number of rows written. Runs inside `transaction.atomic()`: when no row was written (the
    version check refused it), the atomic block is marked for rollback, which takes the event
    back with it.

    On PostgreSQL the UPDATE and the event's INSERT travel as two statements in one round
    trip: one round trip fewer per edit than `update()` and then `record_event`
    (docs/benchmarks.md, audit cost). One statement for both (a data-modifying WITH writing
    the event only if the row was written) cost the database more than it saved the
    application, so the event is sent unconditionally and the rollback keeps the record
    true. The deferred bypass trigger finds the event at COMMIT as before. SQLite runs one
    statement per call: there it is the two steps.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "update_recorded runs inside transaction.atomic(): a refused write rolls back"
        )
    event: dict[str, Any] = {
        "project_id": project_id,
        "object_type": object_type,
        "object_id": object_id,
        "object_repr": object_repr,
        "changes": changes,
        "extra": extra,
    }
    if connection.vendor != "postgresql":
        written = int(queryset.update(**values))
        if written:
            record_event(action, **event)
    else:
        query = queryset.query.chain(sql.UpdateQuery)
        assert isinstance(query, sql.UpdateQuery)
        query.add_update_values(dict(values))
        if query.related_updates or queryset.db != connection.alias:
            raise ValueError("update_recorded writes one table of the default database")
        update_sql, update_params = query.get_compiler(queryset.db).as_sql()
        _, event_params = _event_params(action, **event)
        # Values bound on the client (Django's default for psycopg), so one execute may carry
        # two statements; the first result is the UPDATE's.
        with connection.cursor() as cursor:
            cursor.execute(f"{update_sql}; {_INSERT}", [*update_params, *event_params])
            written = int(cursor.rowcount)
    if not written:
        transaction.set_rollback(True)
    return written
