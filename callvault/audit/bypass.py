"""Writes that bypass the application, caught by the database's own triggers.

Raw SQL from a database console or a forgotten `QuerySet.update()` changes a row without an
audit event. Triggers on the audited tables see every row change; a change the application
did not record for the same object in the same transaction becomes an "unattributed" event
with before -> after (sealed columns as "changed", bookkeeping columns left out, phone-shaped
runs in text blanked, as the application does with free text).

- **PostgreSQL**: one shared function (`PG_FUNCTIONS`, created by audit migration 0005) runs
  from a deferred constraint trigger per table, so it fires at COMMIT, after the application's
  `record_event`, which runs after its write. It asks the event table (index
  audit_object_idx, newest first) whether the application recorded that object in this
  transaction (`txid`), and otherwise inserts the event itself. An UPDATE that carries its
  own event (`recorder.update_recorded`, an order's edit) has it written by an immediate
  trigger and queues nothing for COMMIT (RECORDED_UPDATE_KEY).
- **SQLite** (`callvault/audit/parked.py`) has no deferred triggers and no transaction ids:
  its triggers park each change, an application event's insert claims the parked changes of
  its object, and the sealer sweeps what is left into events.

Which object a table's rows belong to, what is sealed and what is bookkeeping:
`AUDITED_TABLES` (callvault/audit/audited.py). This module installs the triggers of both
databases (`install_sql`, `reinstall`). A migration that rebuilds an audited table on SQLite
(most AlterField/AddField do) drops its triggers, and new columns need new trigger SQL
there: such a migration must run `reinstall(schema_editor, table)` afterwards (test_bypass
checks that every table is covered).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

from callvault.audit import parked
from callvault.audit.audited import AUDITED_TABLES as AUDITED_TABLES  # migrations name it here
from callvault.audit.audited import DATE_OR_TIME, audited_table, ident, literal
from callvault.audit.audited import AuditedTable as AuditedTable  # and the benchmarks this
from callvault.vault.logfilter import PHONE_LIKE

# --- PostgreSQL -----------------------------------------------------------------------------

PG_FUNCTION = "callvault_audit_bypass"

# A statement that records the object it writes in the same statement may attest it: it
# sets this transaction-local setting to "<object type>:<object id>" before the row is
# written (`set_config(ATTESTED_SETTING, ..., true)` in its WHERE). The update trigger's
# WHEN then drops that one declared update (AuditedTable.attested_update) at once, instead
# of queuing a deferred call that would find the event at COMMIT: two of those were the
# largest database cost of the token lookup under load (docs/benchmarks.md, token
# resolution). Any other change to the row, or to another object, is still watched. What it
# gives up: a session that sets the value itself makes that one transition unrecorded. The
# transitions declared are chosen so that this buys nothing: spending a call token, and a
# call's move from new to dialing.
ATTESTED_SETTING = "callvault.attested"

# An UPDATE that carries its own event (`recorder.update_recorded`, PostgreSQL): the
# statement sets two transaction-local settings in its WHERE, before the row is written:
# RECORDED_UPDATE_KEY = "<object type>:<project id>:<object id>" and RECORDED_UPDATE_EVENT =
# the event as JSON (what `record_event` would write, without the object and project). On a
# table with `recorded_updates`:
# - an immediate AFTER UPDATE trigger whose WHEN matches the key against the row itself
#   runs PG_RECORDED_UPDATE_FUNCTION, which inserts the event (object type, project and
#   object id from the key the row matched, the rest from the JSON) and clears the key, so
#   the next statement of the transaction does not find it;
# - the deferred bypass trigger's WHEN is false for that row (the key matched), so nothing
#   is queued for COMMIT.
# The event needs no statement of its own and no deferred call at COMMIT, which cost the
# edit more than the trigger (docs/benchmarks.md, audit cost, "Order edits carry their
# events"). A row the
# WHERE refused (the version check) fires no trigger and writes no event. Unlike an attested
# update, the key drops nothing unrecorded: whoever sets it, the UPDATE of that row writes an
# event about it, in its project, or fails (no valid event in the setting, or no right to
# insert into the event table). A database session that sets both settings itself writes
# the event it chooses, which shows in the order's History, as an event it inserted by hand
# would.
RECORDED_UPDATE_KEY = "callvault.event_key"
RECORDED_UPDATE_EVENT = "callvault.event"
PG_RECORDED_UPDATE = "callvault_audit_recorded_update"

# SECURITY INVOKER (the default): a session without the right to insert events cannot write
# the row this way at all.
PG_RECORDED_UPDATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {PG_RECORDED_UPDATE}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key text := current_setting('{RECORDED_UPDATE_KEY}');
    project text := split_part(key, ':', 2);
    event text := current_setting('{RECORDED_UPDATE_EVENT}', true);
BEGIN
    -- Both are spent: the next statement sets its own.
    PERFORM set_config('{RECORDED_UPDATE_KEY}', '', true),
        set_config('{RECORDED_UPDATE_EVENT}', '', true);
    IF COALESCE(event, '') = '' THEN
        RAISE EXCEPTION 'the update of % carries no event in {RECORDED_UPDATE_EVENT}', key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, actor_name,
        action, object_type, object_id, object_repr, changes, extra, ip, user_agent,
        request_id)
    SELECT e.created_at, project::bigint, e.actor_kind, e.actor_id, e.actor_name, e.action,
        split_part(key, ':', 1), substr(key, length(split_part(key, ':', 1)) +
        length(project) + 3), e.object_repr, e.changes, e.extra, e.ip, e.user_agent,
        e.request_id
    FROM jsonb_populate_record(NULL::audit_auditevent, event::jsonb) AS e;
    RETURN NULL;
END
$$;
"""  # noqa: S608 (this module's constants)

# Phone-shaped runs blanked as vault.logfilter.redact does (both patterns mean the same to
# PostgreSQL's regular expressions as to Python's), in every text value but dates and times.
PG_REDACT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION callvault_audit_redact(value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(value) IS DISTINCT FROM 'string' THEN value
        WHEN value #>> '{{}}' ~ '^(?:{DATE_OR_TIME})$' THEN value
        ELSE to_jsonb(regexp_replace(value #>> '{{}}', '{PHONE_LIKE.pattern}', '[redacted]', 'g'))
    END
$$;
"""  # noqa: S608 (this module's constants)

# Arguments: object type, object column, project column, sealed columns, ignored columns
# (comma-separated), projects_from, resealed_by. SECURITY DEFINER so that a database role
# without rights on the record still gets recorded; session_user is then the login.
PG_BYPASS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION callvault_audit_bypass() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    obj_type text := TG_ARGV[0];
    sealed text[];
    ignored text[];
    old_row jsonb;
    new_row jsonb;
    cur jsonb;
    col text;
    before jsonb;
    after jsonb;
    changes jsonb := '{}';
    only_sealed boolean := true;
    obj_id text;
    project bigint;
    projects bigint[];
    more bigint[];
    source_table text;
    source_column text;
    p bigint;
    verb text;
BEGIN
    -- Whose row is it? Checked first: the application's own writes (nearly all) stop at
    -- one index probe, before any diffing.
    IF TG_OP = 'DELETE' THEN cur := to_jsonb(OLD); ELSE cur := to_jsonb(NEW); END IF;
    obj_id := cur ->> TG_ARGV[1];
    IF TG_ARGV[2] <> '' THEN
        project := (cur ->> TG_ARGV[2])::bigint;
    END IF;
    -- The other projects first: a call token names none of its own, and its events are
    -- filed under its call's. Only those two tables look them up; every other table goes
    -- straight to the probe. The sources in use are spelled out: plpgsql keeps the plans of
    -- static statements, and an EXECUTE is planned on every call (it was most of the token
    -- lookup's trigger time: docs/benchmarks.md).
    IF TG_ARGV[5] <> '' THEN
        source_table := split_part(TG_ARGV[5], '.', 1);
        source_column := split_part(TG_ARGV[5], '.', 2);
        IF source_table = 'telephony_call' AND source_column = 'id' THEN
            SELECT array_agg(project_id) INTO more FROM telephony_call
            WHERE id = obj_id::bigint;
        ELSIF source_table = 'accounts_membership' AND source_column = 'user_id' THEN
            SELECT array_agg(project_id) INTO more FROM accounts_membership
            WHERE user_id = obj_id::bigint;
        ELSE
            EXECUTE format('SELECT array_agg(project_id) FROM %I WHERE %I = $1',
                           source_table, source_column)
                INTO more USING obj_id::bigint;
        END IF;
    END IF;
    projects := COALESCE(more, '{}') || project;

    -- Did the application record this object in this transaction? Newest first: its own
    -- event is the object's latest, so the backward walk of audit_object_idx stops there.
    -- The diff's set-up comes after it: the application's writes all stop here.
    FOREACH p IN ARRAY projects LOOP
        IF p IS NULL THEN
            PERFORM 1 FROM audit_auditevent
            WHERE project_id IS NULL AND object_type = obj_type AND object_id = obj_id
              AND txid = txid_current() AND actor_kind <> 'unattributed'
            ORDER BY id DESC LIMIT 1;
        ELSE
            PERFORM 1 FROM audit_auditevent
            WHERE project_id = p AND object_type = obj_type AND object_id = obj_id
              AND txid = txid_current() AND actor_kind <> 'unattributed'
            ORDER BY id DESC LIMIT 1;
        END IF;
        IF FOUND THEN RETURN NULL; END IF;
    END LOOP;

    sealed := string_to_array(TG_ARGV[3], ',');
    ignored := string_to_array(TG_ARGV[4], ',');
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD) - ignored; END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW) - ignored; END IF;
    FOR col IN SELECT jsonb_object_keys(COALESCE(new_row, old_row)) LOOP
        before := COALESCE(old_row -> col, 'null');
        after := COALESCE(new_row -> col, 'null');
        CONTINUE WHEN before = after OR (TG_OP <> 'UPDATE' AND (before || after) IN (
            '[null, null]', '[null, ""]', '["", null]'));
        IF col = ANY(sealed) THEN
            changes := changes || jsonb_build_object(col, 'changed');
        ELSE
            only_sealed := false;
            changes := changes || jsonb_build_object(col, jsonb_build_array(
                callvault_audit_redact(before), callvault_audit_redact(after)));
        END IF;
    END LOOP;
    IF changes = '{}' THEN RETURN NULL; END IF;

    -- Key rotation re-seals rows in batches and records one event per batch.
    IF only_sealed AND TG_OP = 'UPDATE' AND TG_ARGV[6] <> '' THEN
        PERFORM 1 FROM audit_auditevent
        WHERE project_id IS NULL AND object_type = 'sealed_column' AND object_id = TG_ARGV[6]
          AND txid = txid_current()
        ORDER BY id DESC LIMIT 1;
        IF FOUND THEN RETURN NULL; END IF;
    END IF;

    verb := CASE
        WHEN TG_ARGV[1] <> 'id' THEN 'changed'
        WHEN TG_OP = 'INSERT' THEN 'created'
        WHEN TG_OP = 'DELETE' THEN 'deleted'
        ELSE 'changed' END;
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, actor_name,
        action, object_type, object_id, object_repr, changes, extra, ip, user_agent,
        request_id)
    VALUES (clock_timestamp(), project, 'unattributed', left(session_user, 64),
        left(session_user, 200), obj_type || '.' || verb || '_outside_app', obj_type,
        obj_id, left(obj_type || ' ' || obj_id, 200), changes,
        jsonb_build_object(
            'table', TG_TABLE_NAME,
            'operation', TG_OP,
            'row', cur -> 'id',
            'db_user', session_user,
            'application_name', current_setting('application_name', true),
            'client_addr', host(inet_client_addr()),
            'backend_pid', pg_backend_pid()),
        NULL, '', '');
    RETURN NULL;
END
$$;
"""

PG_FUNCTIONS = (PG_REDACT_FUNCTION, PG_BYPASS_FUNCTION, PG_RECORDED_UPDATE_FUNCTION)
PG_DROP_FUNCTIONS = (
    f"DROP FUNCTION IF EXISTS {PG_RECORDED_UPDATE}()",
    f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()",
    "DROP FUNCTION IF EXISTS callvault_audit_redact(jsonb)",
)


def _pg_install(table: str, spec: AuditedTable, columns: Sequence[str]) -> list[str]:
    args = ", ".join(
        literal(a)
        for a in (
            spec.object_type,
            spec.object_column,
            spec.project_column,
            ",".join(spec.sealed_columns),
            ",".join(spec.ignored_columns),
            spec.projects_from,
            spec.resealed_by,
        )
    )
    # UPDATE has its own trigger so that a change to bookkeeping only (a renewed hold, a
    # key's last use) is dropped at once instead of queuing a deferred call for the commit.
    # The row is compared with NEW whose bookkeeping is put back to OLD's: it names no
    # watched column, so a column added later is watched without reinstalling, and it costs
    # half of comparing two to_jsonb() of the rows (docs/benchmarks.md, audit cost). Only the
    # bookkeeping columns the table has now are named (a migration that adds one reinstalls
    # the triggers, as SQLite needs anyway); one left out, or a value that did not survive the
    # trip through jsonb, would only queue a call that finds no change to record.
    present = [c for c in spec.ignored_columns if c in columns]
    if present:
        kept = ", ".join(f"{literal(c)}, OLD.{ident(c)}" for c in present)
        unchanged = f"OLD IS DISTINCT FROM jsonb_populate_record(NEW, jsonb_build_object({kept}))"
    else:
        unchanged = "OLD.* IS DISTINCT FROM NEW.*"
    if spec.attested_update:
        columns, transition = spec.attested_update
        rest = "ARRAY[" + ", ".join(literal(c) for c in columns) + "]"
        attested = (
            f"COALESCE(current_setting({literal(ATTESTED_SETTING)}, true), '') = "
            f"{literal(spec.object_type + ':')} || NEW.{ident(spec.object_column)}"
        )
        # IS NOT TRUE: a NULL anywhere in it leaves the update watched.
        unchanged = (
            f"({unchanged}) AND (({transition}) AND (to_jsonb(OLD) - {rest}) = "
            f"(to_jsonb(NEW) - {rest}) AND {attested}) IS NOT TRUE"
        )
    recorded: list[str] = []
    if spec.recorded_updates:
        if not spec.project_column:
            raise ValueError(f"{table}: recorded updates need a project column")
        # NULL (never set) or "" (spent) matches nothing.
        key = (
            f"current_setting({literal(RECORDED_UPDATE_KEY)}, true) = "
            f"{literal(spec.object_type + ':')} || NEW.{ident(spec.project_column)} "
            f"|| ':' || NEW.{ident(spec.object_column)}"
        )
        # The key first: it is cheap, and a carried edit then skips the comparison (a WHEN's
        # conditions run in order and stop at the first false one).
        unchanged = f"({key}) IS NOT TRUE AND ({unchanged})"
        recorded = [
            f"CREATE TRIGGER {table}_recorded_update AFTER UPDATE ON {ident(table)} "
            f"FOR EACH ROW WHEN ({key}) EXECUTE FUNCTION {PG_RECORDED_UPDATE}()"
        ]
    deferred = "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
    t = ident(table)
    return [
        f"CREATE CONSTRAINT TRIGGER {table}_bypass_write AFTER INSERT OR DELETE ON {t} "
        f"{deferred} EXECUTE FUNCTION {PG_FUNCTION}({args})",
        f"CREATE CONSTRAINT TRIGGER {table}_bypass_update AFTER UPDATE ON {t} "
        f"{deferred} WHEN ({unchanged}) EXECUTE FUNCTION {PG_FUNCTION}({args})",
        *recorded,
    ]


def _table_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        return [col.name for col in connection.introspection.get_table_description(cursor, table)]


# --- Both -----------------------------------------------------------------------------------


def install_sql(
    vendor: str,
    table: str,
    *,
    object_type: str,
    project_column: str | None,
    sealed_columns: Sequence[str] = (),
    ignored_columns: Sequence[str] = (),
    object_column: str = "id",
    projects_from: str = "",
    resealed_by: str = "",
    attested_update: tuple[tuple[str, ...], str] | None = None,
    recorded_updates: bool = False,
    update_stamp: str = "",
    columns: Sequence[str] | None = None,
) -> list[str]:
    """The statements that install the bypass triggers on one table (PostgreSQL: the shared
    function must exist, see PG_FUNCTIONS). On SQLite the trigger names every column, on
    PostgreSQL the bookkeeping ones the table has: read from the default database unless
    `columns` is given."""
    spec = AuditedTable(
        table,
        object_type,
        project_column or "",
        object_column=object_column,
        sealed_columns=tuple(sealed_columns),
        ignored_columns=tuple(ignored_columns),
        projects_from=projects_from,
        resealed_by=resealed_by,
        attested_update=attested_update,
        recorded_updates=recorded_updates,
        update_stamp=update_stamp,
    )
    if vendor == "postgresql":
        return _pg_install(table, spec, list(columns or _table_columns(table)))
    if vendor == "sqlite":
        return parked.install_sql(table, spec, list(columns or _table_columns(table)))
    raise ValueError(f"no bypass triggers for {vendor}")


def drop_sql(vendor: str, table: str) -> list[str]:
    """The statements that remove one table's bypass triggers."""
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_{kind} ON {ident(table)}"
            for kind in ("bypass_write", "bypass_update", "recorded_update")
        ]
    return parked.drop_sql(table)


def spec_sql(vendor: str, spec: AuditedTable, columns: Sequence[str] | None = None) -> list[str]:
    """install_sql for a spec of AUDITED_TABLES."""
    return install_sql(
        vendor,
        spec.table,
        object_type=spec.object_type,
        project_column=spec.project_column,
        sealed_columns=spec.sealed_columns,
        ignored_columns=spec.ignored_columns,
        object_column=spec.object_column,
        projects_from=spec.projects_from,
        resealed_by=spec.resealed_by,
        attested_update=spec.attested_update,
        recorded_updates=spec.recorded_updates,
        update_stamp=spec.update_stamp,
        columns=columns,
    )


def reinstall(schema_editor: Any, *tables: str) -> None:
    """Migration step: (re)install the triggers of the named audited tables."""
    conn = schema_editor.connection
    for table in tables:
        with conn.cursor() as cursor:
            columns = [c.name for c in conn.introspection.get_table_description(cursor, table)]
        for statement in drop_sql(conn.vendor, table) + spec_sql(
            conn.vendor, audited_table(table), columns
        ):
            schema_editor.execute(statement, params=None)


def uninstall(schema_editor: Any, *tables: str) -> None:
    """Migration step backwards: remove the triggers of the named tables."""
    for table in tables:
        for statement in drop_sql(schema_editor.connection.vendor, table):
            schema_editor.execute(statement, params=None)
