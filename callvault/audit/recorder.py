"""Writing events: `record_event` and the before -> after helpers actions use."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from callvault.audit import audited, bypass, parked
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


def _event_values(
    action: str,
    *,
    project_id: int | None,
    object_type: str,
    object_id: object,
    object_repr: str,
    changes: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One event's values (RECORDED_COLUMNS), stamped with the current actor and request
    context (and the time, unless given)."""
    ctx = current()
    return {
        "created_at": created_at or timezone.now(),
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


def _insert_params(values: Mapping[str, Any]) -> list[Any]:
    """An event's values adapted for _INSERT exactly as the ORM would adapt them."""
    ops = connection.ops
    adapted = {
        "created_at": ops.adapt_datetimefield_value(values["created_at"]),
        "changes": ops.adapt_json_value(values["changes"], None),
        "extra": ops.adapt_json_value(values["extra"], None),
        "ip": ops.adapt_ipaddressfield_value(values["ip"]),
    }
    return [adapted.get(column, values[column]) for column in RECORDED_COLUMNS]


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
    values = _event_values(
        action,
        project_id=project_id,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        changes=changes,
        extra=extra,
    )
    return _insert(values)


def _insert(values: dict[str, Any]) -> AuditEvent:
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, _insert_params(values))
        (event_id,) = cursor.fetchone()
    # SQLite: the event's insert claimed the changes parked for its object
    # (parked.SQLITE_CLAIM_SQL); a re-seal claims those of its tables.
    if values["object_type"] == audited.SEALED_COLUMN_OBJECT:
        parked.claim_reseals(values["object_id"])
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
    key, maybe with a version check) and the event recording `action` about it, when the row
    was written. Returns the number of rows written. Only for a table whose spec in
    `audited.AUDITED_TABLES` has `recorded_updates`, and inside `transaction.atomic()`: when no
    row was written (the version check refused it), the atomic block is marked for rollback.
    The row's update stamp (the spec's `update_stamp`) is the event's time: the one in
    `values`, or now.

    On PostgreSQL the UPDATE carries its event: its WHERE sets the event and the object's key
    as transaction-local settings, the table's trigger writes the event inside the UPDATE,
    and the deferred bypass trigger skips the row (bypass.RECORDED_UPDATE_KEY). One
    statement, and no deferred call at COMMIT to find the event: cheaper for both the
    application and the database than the UPDATE and record_event's INSERT sent together
    (docs/benchmarks.md, audit cost). A row the WHERE refused writes no event, and the
    settings it may have set go with the rollback. On SQLite the event is inserted first and
    the UPDATE right after it: its trigger recognises the event and parks nothing
    (parked._recorded_update); a refused write takes the event back with the rollback.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "update_recorded runs inside transaction.atomic(): a refused write rolls back"
        )
    table = queryset.model._meta.db_table
    spec = next((s for s in audited.AUDITED_TABLES if s.table == table), None)
    if spec is None or not spec.recorded_updates or spec.object_type != object_type:
        raise ValueError(f"{table} does not take recorded updates of {object_type!r} objects")
    if queryset.db != connection.alias or project_id is None:
        raise ValueError("update_recorded writes one project's row in the default database")
    stamped = dict(values)
    stamped.setdefault(spec.update_stamp, timezone.now())
    event = _event_values(
        action,
        project_id=project_id,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        changes=changes,
        extra=extra,
        created_at=stamped[spec.update_stamp],
    )
    # A row this statement writes is the row its event is about: the triggers recognise it
    # by that, and a row they did not recognise would be recorded as written outside the
    # application, without the event. The SQL names come from the model and AUDITED_TABLES;
    # every value is bound. (extra(where=...): a filter(RawSQL(...)) cost 35 µs more Python.)
    qn = connection.ops.quote_name
    where = [
        f"{qn(table)}.{qn(spec.object_column)} = %s AND {qn(table)}.{qn(spec.project_column)} = %s"
    ]
    params: list[Any] = [object_id, project_id]
    if connection.vendor == "postgresql":
        key = f"{object_type}:{project_id}:{event['object_id']}"
        carried = {k: v for k, v in event.items() if k not in _CARRIED_BY_KEY}
        carried["created_at"] = event["created_at"].isoformat()
        where.insert(0, "set_config(%s, %s, true) || set_config(%s, %s, true) IS NOT NULL")
        params[:0] = [
            bypass.RECORDED_UPDATE_EVENT,
            json.dumps(carried, separators=(",", ":")),
            bypass.RECORDED_UPDATE_KEY,
            key,
        ]
    else:
        _insert(event)  # first: the UPDATE's trigger recognises it as this connection's last
    written = int(queryset.extra(where=where, params=params).update(**stamped))  # noqa: S610
    if not written:
        transaction.set_rollback(True)
    return written


# What the trigger takes from the key the row matched, not from the event's JSON.
_CARRIED_BY_KEY = ("project_id", "object_type", "object_id")
