"""SQLite's side of the bypass triggers: every change parked until an event claims it.

SQLite has no deferred triggers and no transaction ids: the triggers installed here park
each change to an audited table in `PendingChange`; an application event's insert deletes
the parked rows of its object (SQLITE_CLAIM_SQL), and `sweep_pending_changes` (called by
the sealer) turns what is left into "unattributed" events. An order's edit
(`recorder.update_recorded`) inserts its event first, and the update trigger, recognising
it, parks nothing (`_recorded_update`). Its one weakness, accepted for the embedded setup:
an application event for an object also claims a bypassing change to that object parked
before it and not yet swept. The shared entry points are in `callvault/audit/bypass.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from callvault.audit import audited
from callvault.audit.audited import (
    CHANGED,
    DATE_OR_TIME,
    RESEAL,
    AuditedTable,
    ident,
    literal,
)
from callvault.audit.models import ActorKind, AuditEvent, PendingChange
from callvault.vault.logfilter import redact

# SQLite has no database users; unattributed events there name the database itself.
SQLITE_ACTOR = "database"
SWEEP_BATCH = 500
SQLITE_MAX_COLUMNS = 60  # json_object takes at most 127 arguments


def _row_json(columns: Sequence[str], spec: AuditedTable, row: str, other: str | None) -> str:
    """json_object of a row's watched columns; a sealed one as {"sealed": 1} when it differs
    from `other` (or, for an insert or delete, when it holds anything), else {"sealed": 0}."""
    parts = []
    for name in columns:
        col = ident(name)
        if name in spec.sealed_columns:
            if other is None:
                differs = f"COALESCE({row}.{col}, '') <> ''"
            else:
                differs = f"{row}.{col} IS NOT {other}.{col}"
            value = f"json_object('sealed', CASE WHEN {differs} THEN 1 ELSE 0 END)"
        else:
            value = f"{row}.{col}"
        parts.append(f"{literal(name)}, {value}")
    return "json_object(" + ", ".join(parts) + ")"


# An application event claims the parked changes of its object as it is inserted (the
# trigger replaces a DELETE statement after every event). Sweeps insert unattributed events
# from parked rows, batch by batch: those claim nothing. Re-seal events (SEALED_COLUMN_OBJECT)
# claim by table, in `claim_reseals`.
SQLITE_CLAIM_TRIGGER = "audit_auditevent_claims_parked"
SQLITE_CLAIM_SQL = f"""
CREATE TRIGGER {SQLITE_CLAIM_TRIGGER} AFTER INSERT ON audit_auditevent
WHEN NEW.actor_kind <> {literal(ActorKind.UNATTRIBUTED)} AND NEW.object_id <> ''
BEGIN
    DELETE FROM audit_pendingchange
    WHERE object_type = NEW.object_type AND object_id = NEW.object_id;
END
"""  # noqa: S608 (constants, no input)


# SQLite's recorded update (`recorder.update_recorded`): the application inserts the event
# first and then writes the row, setting its update stamp to the event's time. The update
# trigger parks nothing when the connection's last INSERT (`last_insert_rowid()`, this
# connection's alone) is an application event about this row, in its project, whose time
# is the stamp this UPDATE has just set. No parked row and no claim: two writes fewer per
# edit. Any other write is parked as before: a later UPDATE of the row that leaves the stamp
# alone or sets another time, or one after another INSERT. Like a key set by hand on
# PostgreSQL, a session that inserts an event itself and then writes the row with that
# event's time hides the write behind the event it chose, which shows in the History.
def _recorded_update(spec: AuditedTable) -> str:
    if not (spec.project_column and spec.update_stamp):
        raise ValueError(f"{spec.table}: recorded updates need a project and a stamp column")
    stamp = ident(spec.update_stamp)
    return (
        f"NEW.{stamp} IS NOT OLD.{stamp} AND EXISTS (SELECT 1 FROM audit_auditevent e "  # noqa: S608
        f"WHERE e.id = last_insert_rowid() AND e.created_at = NEW.{stamp} "
        f"AND e.object_type = {literal(spec.object_type)} "
        f"AND e.object_id = CAST(NEW.{ident(spec.object_column)} AS TEXT) "
        f"AND e.project_id = NEW.{ident(spec.project_column)} "
        f"AND e.actor_kind <> {literal(ActorKind.UNATTRIBUTED)})"
    )


def install_sql(table: str, spec: AuditedTable, columns: Sequence[str]) -> list[str]:
    """The statements that install one table's triggers; `columns`: all of the table's."""
    watched = [c for c in columns if c not in spec.ignored_columns]
    if len(watched) > SQLITE_MAX_COLUMNS:
        raise ValueError(f"{table}: too many columns for one json_object")
    plain = [c for c in watched if c not in spec.sealed_columns]
    sealed = [c for c in watched if c in spec.sealed_columns]

    def differs(names: Iterable[str]) -> str:
        return " OR ".join(f"OLD.{ident(c)} IS NOT NEW.{ident(c)}" for c in names) or "0"

    def insert(operation: str, row: str, before: str, after: str) -> str:
        project = f"{row}.{ident(spec.project_column)}" if spec.project_column else "NULL"
        # Names and literals from the migration's spec (quoted), no input.
        return (
            "INSERT INTO audit_pendingchange (created_at, table_name, operation, project_id, "  # noqa: S608
            "object_type, object_id, before, after) VALUES ("
            f"strftime('%Y-%m-%d %H:%M:%f', 'now'), {literal(table)}, {operation}, "
            f"{project}, {literal(spec.object_type)}, "
            f"CAST({row}.{ident(spec.object_column)} AS TEXT), {before}, {after});"
        )

    t = ident(table)
    # A change to sealed columns only is a re-seal candidate (vault.rotate claims those).
    operation = f"CASE WHEN {differs(plain)} THEN 'UPDATE' ELSE '{RESEAL}' END"
    if not spec.resealed_by:
        operation = "'UPDATE'"
    watch = differs(plain + sealed)
    if spec.recorded_updates:
        watch = f"({watch}) AND NOT ({_recorded_update(spec)})"
    return [
        f"CREATE TRIGGER {table}_bypass_insert AFTER INSERT ON {t} BEGIN "
        + insert("'INSERT'", "NEW", "NULL", _row_json(watched, spec, "NEW", None))
        + " END",
        f"CREATE TRIGGER {table}_bypass_update AFTER UPDATE ON {t} WHEN {watch} BEGIN "
        + insert(
            operation,
            "NEW",
            _row_json(watched, spec, "OLD", "OLD"),
            _row_json(watched, spec, "NEW", "OLD"),
        )
        + " END",
        f"CREATE TRIGGER {table}_bypass_delete AFTER DELETE ON {t} BEGIN "
        + insert("'DELETE'", "OLD", _row_json(watched, spec, "OLD", None), "NULL")
        + " END",
    ]


def drop_sql(table: str) -> list[str]:
    """The statements that remove one table's triggers."""
    return [f"DROP TRIGGER IF EXISTS {table}_bypass_{op}" for op in ("insert", "update", "delete")]


def claim_reseals(object_id: str) -> None:
    """SQLite: a vault.rotate event (SEALED_COLUMN_OBJECT) accounts for the re-seals parked
    on the tables whose sealed column it names. Other events claim their object's parked
    changes by themselves (SQLITE_CLAIM_SQL). Called by record_event."""
    tables = [s.table for s in audited.AUDITED_TABLES if s.resealed_by == object_id]
    if connection.vendor != "sqlite" or not tables:
        return
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(
                "DELETE FROM audit_pendingchange WHERE operation = %s AND table_name = %s",
                [RESEAL, table],
            )


def _redacted(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(DATE_OR_TIME, value):
        return redact(value)
    return value


def _is_sealed_marker(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed"}


def pending_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """{column: [before, after]} of a parked change, sealed columns as "changed"."""
    old, new = before or {}, after or {}
    changes: dict[str, Any] = {}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if _is_sealed_marker(a) or _is_sealed_marker(b):
            if (a or {}).get("sealed") or (b or {}).get("sealed"):
                changes[name] = CHANGED
            continue
        if a == b or (not (before and after) and a in (None, "") and b in (None, "")):
            continue
        changes[name] = [_redacted(a), _redacted(b)]
    return changes


def _action(row: PendingChange) -> str:
    spec = next((s for s in audited.AUDITED_TABLES if s.table == row.table_name), None)
    verb = {"INSERT": "created", "DELETE": "deleted"}.get(row.operation, "changed")
    if spec is not None and spec.object_column != "id":
        verb = "changed"
    return f"{row.object_type}.{verb}_outside_app"


def _event(row: PendingChange) -> AuditEvent | None:
    changes = pending_diff(row.before, row.after)
    if not changes:
        return None
    source = row.after or row.before or {}
    return AuditEvent(
        created_at=row.created_at,
        project_id=row.project_id,
        actor_kind=ActorKind.UNATTRIBUTED,
        actor_id=SQLITE_ACTOR,
        actor_name=SQLITE_ACTOR,
        action=_action(row),
        object_type=row.object_type,
        object_id=row.object_id,
        object_repr=f"{row.object_type} {row.object_id}"[:200],
        changes=changes,
        extra={
            "table": row.table_name,
            "operation": "UPDATE" if row.operation == RESEAL else row.operation,
            "row": source.get("id"),
        },
    )


def sweep_pending_changes(older_than_seconds: float = 0) -> int:
    """SQLite: turn parked changes nobody claimed into unattributed events; how many.

    On SQLite a writer holds the database's write lock until it commits and nobody sees its
    parked rows before, so every visible row is final: the default age is 0. PostgreSQL
    records in its triggers and parks nothing: 0.
    """
    if connection.vendor != "sqlite":
        return 0
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    recorded = 0
    while True:
        with transaction.atomic():
            rows = list(
                PendingChange.objects.filter(created_at__lte=cutoff).order_by("id")[:SWEEP_BATCH]
            )
            events = [e for e in map(_event, rows) if e is not None]
            AuditEvent.objects.bulk_create(events)
            PendingChange.objects.filter(pk__in=[r.pk for r in rows]).delete()
        recorded += len(events)
        if len(rows) < SWEEP_BATCH:
            return recorded
