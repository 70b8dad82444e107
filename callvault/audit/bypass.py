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
- **SQLite** has no deferred triggers and no transaction ids: its triggers park each change in
  `PendingChange`; an application event's insert deletes the parked rows of its object
  (SQLITE_CLAIM_SQL), and `sweep_pending_changes` (called by the sealer) turns what is left
  into events. An order's edit (`recorder.update_recorded`) inserts its event first and the
  update trigger, recognising it, parks nothing (`_sqlite_recorded_update`). Its one
  weakness, accepted for the embedded setup: an application event for an object also claims
  a bypassing change to that object parked before it and not yet swept.

Which object a table's rows belong to is what the application records as the event's object
(see `AUDITED_TABLES`): items and comments are recorded on their order.
A migration that rebuilds an audited table on SQLite (most AlterField/AddField do) drops its
triggers, and new columns need new trigger SQL there: such a migration must run
`reinstall(schema_editor, table)` afterwards (test_bypass checks that every table is covered).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from callvault.audit.models import ActorKind, AuditEvent, PendingChange
from callvault.vault.logfilter import PHONE_LIKE, redact

CHANGED = "changed"
# The object type of vault.rotate's batch events: re-sealing claims sealed-only changes.
SEALED_COLUMN_OBJECT = "sealed_column"
RESEAL = "RESEAL"
# SQLite has no database users; unattributed events there name the database itself.
SQLITE_ACTOR = "database"
SWEEP_BATCH = 500


@dataclass(frozen=True)
class AuditedTable:
    """A table the triggers watch and how its rows map onto the application's events."""

    table: str
    object_type: str
    # The column holding the project id the application files the event under ("" = none).
    project_column: str
    # The column holding the object id the application records (the row's, or its parent's).
    object_column: str = "id"
    # Secrets: recorded as "changed", never their value.
    sealed_columns: tuple[str, ...] = ()
    # Bookkeeping the application changes without an event on purpose: left out of diffs,
    # and a change to only these records nothing.
    ignored_columns: tuple[str, ...] = ()
    # "table.column" listing the object's other projects: events about it may be filed
    # under any of them or none (users).
    projects_from: str = ""
    # The object id of the vault.rotate event that re-seals this table's sealed column.
    resealed_by: str = ""
    # PostgreSQL: one update that the statement making it also records, attested as
    # described at ATTESTED_SETTING: (the columns it changes, the transition as a condition
    # on OLD and NEW). Such an update queues no deferred call.
    attested_update: tuple[tuple[str, ...], str] | None = None
    # `recorder.update_recorded` may hand this table's UPDATEs their events: on PostgreSQL
    # the UPDATE carries its event (RECORDED_UPDATE_KEY), on SQLite the event written just
    # before it is recognised (_sqlite_recorded_update). Needs a project column, and the
    # row's update-time column (`update_stamp`), which the write sets to the event's time.
    recorded_updates: bool = False
    update_stamp: str = ""


# The mapping, read off the actions that write each table (orders/actions.py, queue.py,
# setup_actions.py, accounts/actions.py, accounts/signals.py, vault/rotation.py).
AUDITED_TABLES: tuple[AuditedTable, ...] = (
    AuditedTable(
        "orders_order",
        "order",
        "project_id",
        # Ciphertext, its blind index, and the mask (it shows the last digits).
        sealed_columns=("phone_sealed", "phone_index", "phone_mask"),
        # The hold (locked_by, locked_until): every card view renews it (queue.extend_hold),
        # it expires by itself within minutes, and the claim that sets it is the hottest
        # statement in the call center: watching it cost the claim its deferred trigger
        # (docs/benchmarks.md, queue claims). Who takes an order for good is assigned_to,
        # which is watched. queue_rank: a queue-order change re-ranks waiting orders
        # (actions.rank_statuses, recorded as the settings change); version/updated_at only
        # accompany recorded edits.
        ignored_columns=(
            "locked_by_id",
            "locked_until",
            "queue_rank",
            "version",
            "updated_at",
        ),
        resealed_by="orders.Order.phone_sealed",
        # Every edit of an order (orders/actions.py, _save_order) carries its event.
        recorded_updates=True,
        update_stamp="updated_at",
    ),
    # Items and comments are recorded as events of their order. (StatusChange is not
    # watched: it is a report's copy of the order.status events, and it is written after
    # them, which SQLite's claim-by-record_event cannot see.)
    AuditedTable("orders_orderitem", "order", "project_id", object_column="order_id"),
    AuditedTable("orders_comment", "order", "project_id", object_column="order_id"),
    AuditedTable("orders_status", "status", "project_id", ignored_columns=("queue_rank",)),
    AuditedTable("orders_product", "product", "project_id"),
    AuditedTable("orders_worksettings", "work_settings", "project_id"),
    # order_seq: every lead takes the next number (recorded as the order's creation).
    AuditedTable("accounts_project", "project", "id", ignored_columns=("order_seq",)),
    AuditedTable("accounts_membership", "membership", "project_id"),
    # last_used_at: refreshed at most once a minute by authenticate_api_key.
    AuditedTable(
        "accounts_apikey",
        "api_key",
        "project_id",
        sealed_columns=("secret_hash",),
        ignored_columns=("last_used_at",),
    ),
    # Who may enter (accounts/policy.py, allowlist.py, support.py, twofactor.py).
    AuditedTable("accounts_securitypolicy", "security_policy", "project_id"),
    AuditedTable("accounts_rolepolicy", "role_policy", "project_id"),
    AuditedTable("accounts_allowednetwork", "allowed_network", "project_id"),
    # link_token_hash: the one-time link's secret, as a hash; it is still a credential.
    AuditedTable(
        "accounts_supportgrant", "support_grant", "project_id", sealed_columns=("link_token_hash",)
    ),
    # Passkeys are events of their user; sign_count and last_used_at move on every login.
    AuditedTable(
        "accounts_webauthncredential",
        "user",
        "",
        object_column="user_id",
        sealed_columns=("credential_id", "public_key"),
        ignored_columns=("sign_count", "last_used_at"),
        projects_from="accounts_membership.user_id",
    ),
    # Leak controls (callvault/guard): settings, quotas, alert rules, suspensions.
    AuditedTable(
        "guard_guardsettings",
        "guard_settings",
        "project_id",
        # The webhook address may carry a chat bot's token in its path: a write outside the
        # application records that it changed, never the address.
        sealed_columns=("webhook_secret_sealed", "webhook_url"),
        resealed_by="guard.GuardSettings.webhook_secret_sealed",
    ),
    AuditedTable("guard_quotarule", "quota_rule", "project_id"),
    AuditedTable("guard_alertrule", "alert_rule", "project_id"),
    AuditedTable("guard_suspension", "suspension", "project_id"),
    # Telephony (callvault/telephony): settings, PBXs, SIP accounts, calls and their tokens.
    AuditedTable(
        "telephony_telephonysettings",
        "telephony_settings",
        "project_id",
        sealed_columns=("secret_sealed",),
        resealed_by="telephony.TelephonySettings.secret_sealed",
    ),
    # last_used_at: refreshed at most once a minute by the PBX endpoints' authentication.
    AuditedTable(
        "telephony_pbx",
        "pbx",
        "project_id",
        sealed_columns=("secret_hash",),
        ignored_columns=("last_used_at",),
    ),
    AuditedTable("telephony_sipaccount", "sip_account", "project_id", sealed_columns=("ha1",)),
    # The token lookup's one statement spends the token, moves the call from new to dialing
    # and records call.dial (telephony/actions.py, _SPEND_SQL): both updates are attested.
    AuditedTable(
        "telephony_call",
        "call",
        "project_id",
        attested_update=(("state",), "OLD.state = 'new' AND NEW.state = 'dialing'"),
    ),
    # A token is an event of its call (call.start issues it, call.dial spends it): a used_at
    # cleared outside the application, to dial a token twice, is caught here.
    AuditedTable(
        "telephony_calltoken",
        "call",
        "",
        object_column="call_id",
        sealed_columns=("token_hash",),
        projects_from="telephony_call.id",
        attested_update=(("used_at",), "OLD.used_at IS NULL AND NEW.used_at IS NOT NULL"),
    ),
    # Recordings and reviews are events of their call (recording.store/purge,
    # call_review.create): a recording deleted or a score changed outside the application
    # is what these catch.
    AuditedTable("telephony_recording", "call", "project_id", object_column="call_id"),
    AuditedTable("telephony_callreview", "call", "project_id", object_column="call_id"),
    # Monitoring (callvault/monitoring): the policy, enrolment codes and devices. A code and a
    # device token are kept as hashes, still credentials. What the agent's requests move on
    # a device (last seen, its address, the last heartbeat's seq and time, the silence
    # alert's mark) is bookkeeping; spans and screenshots are the agent's data, not
    # decisions (their reading is recorded: timeline.view, screenshot.view).
    AuditedTable("monitoring_monitoringpolicy", "monitoring_policy", "project_id"),
    AuditedTable(
        "monitoring_enrolmentcode", "enrolment_code", "project_id", sealed_columns=("code_hash",)
    ),
    AuditedTable(
        "monitoring_device",
        "device",
        "project_id",
        sealed_columns=("token_hash",),
        ignored_columns=(
            "last_seen_at",
            "last_ip",
            "last_seq",
            "last_heartbeat_at",
            "open_span_id",
            "silence_alerted_at",
        ),
    ),
    # Users belong to no project, but their events are filed under their project when they
    # have one (logins, password resets).
    AuditedTable(
        "accounts_user",
        "user",
        "",
        sealed_columns=("password",),
        ignored_columns=("last_login",),
        projects_from="accounts_membership.user_id",
    ),
)


def audited_table(table: str) -> AuditedTable:
    """The spec of one audited table."""
    return next(spec for spec in AUDITED_TABLES if spec.table == table)


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

# Dates and times as the database renders them: left as they are, since the phone pattern
# would blank them and they cannot carry a number.
DATE_OR_TIME = (
    r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d(:?\d\d)?|Z)?)?"
    r"|\d\d:\d\d(:\d\d(\.\d+)?)?"
)

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


def _literal(value: str) -> str:
    """A SQL string literal (the values come from migrations, never from users)."""
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


def _pg_install(table: str, spec: AuditedTable, columns: Sequence[str]) -> list[str]:
    args = ", ".join(
        _literal(a)
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
        kept = ", ".join(f"{_literal(c)}, OLD.{_ident(c)}" for c in present)
        unchanged = f"OLD IS DISTINCT FROM jsonb_populate_record(NEW, jsonb_build_object({kept}))"
    else:
        unchanged = "OLD.* IS DISTINCT FROM NEW.*"
    if spec.attested_update:
        columns, transition = spec.attested_update
        rest = "ARRAY[" + ", ".join(_literal(c) for c in columns) + "]"
        attested = (
            f"COALESCE(current_setting({_literal(ATTESTED_SETTING)}, true), '') = "
            f"{_literal(spec.object_type + ':')} || NEW.{_ident(spec.object_column)}"
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
            f"current_setting({_literal(RECORDED_UPDATE_KEY)}, true) = "
            f"{_literal(spec.object_type + ':')} || NEW.{_ident(spec.project_column)} "
            f"|| ':' || NEW.{_ident(spec.object_column)}"
        )
        # The key first: it is cheap, and a carried edit then skips the comparison (a WHEN's
        # conditions run in order and stop at the first false one).
        unchanged = f"({key}) IS NOT TRUE AND ({unchanged})"
        recorded = [
            f"CREATE TRIGGER {table}_recorded_update AFTER UPDATE ON {_ident(table)} "
            f"FOR EACH ROW WHEN ({key}) EXECUTE FUNCTION {PG_RECORDED_UPDATE}()"
        ]
    deferred = "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
    t = _ident(table)
    return [
        f"CREATE CONSTRAINT TRIGGER {table}_bypass_write AFTER INSERT OR DELETE ON {t} "
        f"{deferred} EXECUTE FUNCTION {PG_FUNCTION}({args})",
        f"CREATE CONSTRAINT TRIGGER {table}_bypass_update AFTER UPDATE ON {t} "
        f"{deferred} WHEN ({unchanged}) EXECUTE FUNCTION {PG_FUNCTION}({args})",
        *recorded,
    ]


# --- SQLite ---------------------------------------------------------------------------------

SQLITE_MAX_COLUMNS = 60  # json_object takes at most 127 arguments


def _table_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        return [col.name for col in connection.introspection.get_table_description(cursor, table)]


def _sqlite_row(columns: Sequence[str], spec: AuditedTable, row: str, other: str | None) -> str:
    """json_object of a row's watched columns; a sealed one as {"sealed": 1} when it differs
    from `other` (or, for an insert or delete, when it holds anything), else {"sealed": 0}."""
    parts = []
    for name in columns:
        col = _ident(name)
        if name in spec.sealed_columns:
            if other is None:
                differs = f"COALESCE({row}.{col}, '') <> ''"
            else:
                differs = f"{row}.{col} IS NOT {other}.{col}"
            value = f"json_object('sealed', CASE WHEN {differs} THEN 1 ELSE 0 END)"
        else:
            value = f"{row}.{col}"
        parts.append(f"{_literal(name)}, {value}")
    return "json_object(" + ", ".join(parts) + ")"


# An application event claims the parked changes of its object as it is inserted (the
# trigger replaces a DELETE statement after every event). Sweeps insert unattributed events
# from parked rows, batch by batch: those claim nothing. Re-seal events (SEALED_COLUMN_OBJECT)
# claim by table, in `claim_reseals`.
SQLITE_CLAIM_TRIGGER = "audit_auditevent_claims_parked"
SQLITE_CLAIM_SQL = f"""
CREATE TRIGGER {SQLITE_CLAIM_TRIGGER} AFTER INSERT ON audit_auditevent
WHEN NEW.actor_kind <> {_literal(ActorKind.UNATTRIBUTED)} AND NEW.object_id <> ''
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
def _sqlite_recorded_update(spec: AuditedTable) -> str:
    if not (spec.project_column and spec.update_stamp):
        raise ValueError(f"{spec.table}: recorded updates need a project and a stamp column")
    stamp = _ident(spec.update_stamp)
    return (
        f"NEW.{stamp} IS NOT OLD.{stamp} AND EXISTS (SELECT 1 FROM audit_auditevent e "  # noqa: S608
        f"WHERE e.id = last_insert_rowid() AND e.created_at = NEW.{stamp} "
        f"AND e.object_type = {_literal(spec.object_type)} "
        f"AND e.object_id = CAST(NEW.{_ident(spec.object_column)} AS TEXT) "
        f"AND e.project_id = NEW.{_ident(spec.project_column)} "
        f"AND e.actor_kind <> {_literal(ActorKind.UNATTRIBUTED)})"
    )


def _sqlite_install(table: str, spec: AuditedTable, columns: Sequence[str]) -> list[str]:
    watched = [c for c in columns if c not in spec.ignored_columns]
    if len(watched) > SQLITE_MAX_COLUMNS:
        raise ValueError(f"{table}: too many columns for one json_object")
    plain = [c for c in watched if c not in spec.sealed_columns]
    sealed = [c for c in watched if c in spec.sealed_columns]

    def differs(names: Iterable[str]) -> str:
        return " OR ".join(f"OLD.{_ident(c)} IS NOT NEW.{_ident(c)}" for c in names) or "0"

    def insert(operation: str, row: str, before: str, after: str) -> str:
        project = f"{row}.{_ident(spec.project_column)}" if spec.project_column else "NULL"
        # Names and literals from the migration's spec (quoted), no input.
        return (
            "INSERT INTO audit_pendingchange (created_at, table_name, operation, project_id, "  # noqa: S608
            "object_type, object_id, before, after) VALUES ("
            f"strftime('%Y-%m-%d %H:%M:%f', 'now'), {_literal(table)}, {operation}, "
            f"{project}, {_literal(spec.object_type)}, "
            f"CAST({row}.{_ident(spec.object_column)} AS TEXT), {before}, {after});"
        )

    t = _ident(table)
    # A change to sealed columns only is a re-seal candidate (vault.rotate claims those).
    operation = f"CASE WHEN {differs(plain)} THEN 'UPDATE' ELSE '{RESEAL}' END"
    if not spec.resealed_by:
        operation = "'UPDATE'"
    watch = differs(plain + sealed)
    if spec.recorded_updates:
        watch = f"({watch}) AND NOT ({_sqlite_recorded_update(spec)})"
    return [
        f"CREATE TRIGGER {table}_bypass_insert AFTER INSERT ON {t} BEGIN "
        + insert("'INSERT'", "NEW", "NULL", _sqlite_row(watched, spec, "NEW", None))
        + " END",
        f"CREATE TRIGGER {table}_bypass_update AFTER UPDATE ON {t} WHEN {watch} BEGIN "
        + insert(
            operation,
            "NEW",
            _sqlite_row(watched, spec, "OLD", "OLD"),
            _sqlite_row(watched, spec, "NEW", "OLD"),
        )
        + " END",
        f"CREATE TRIGGER {table}_bypass_delete AFTER DELETE ON {t} BEGIN "
        + insert("'DELETE'", "OLD", _sqlite_row(watched, spec, "OLD", None), "NULL")
        + " END",
    ]


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
        return _sqlite_install(table, spec, list(columns or _table_columns(table)))
    raise ValueError(f"no bypass triggers for {vendor}")


def drop_sql(vendor: str, table: str) -> list[str]:
    """The statements that remove one table's bypass triggers."""
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {table}_{kind} ON {_ident(table)}"
            for kind in ("bypass_write", "bypass_update", "recorded_update")
        ]
    return [f"DROP TRIGGER IF EXISTS {table}_bypass_{op}" for op in ("insert", "update", "delete")]


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


# --- The SQLite claim and sweep -------------------------------------------------------------


def claim_reseals(object_id: str) -> None:
    """SQLite: a vault.rotate event (SEALED_COLUMN_OBJECT) accounts for the re-seals parked
    on the tables whose sealed column it names. Other events claim their object's parked
    changes by themselves (SQLITE_CLAIM_SQL). Called by record_event."""
    tables = [s.table for s in AUDITED_TABLES if s.resealed_by == object_id]
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
    spec = next((s for s in AUDITED_TABLES if s.table == row.table_name), None)
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
