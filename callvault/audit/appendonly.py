"""Database triggers that make the record's tables append-only, and the one guarded way past them.

They stop the application and anyone who writes through it from changing history; they
do not stop a database administrator, who can drop them (and so can retention pruning,
through `pruning()` below). That is why `callvault audit verify` trusts the hash chain and
the signed checkpoints and prune records, never the triggers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection

# Events and what the sealer and retention wrote about them. ChainHead is not here: the
# sealer rewrites it, and nothing trusts it.
TABLES = ("audit_auditevent", "audit_chainlink", "audit_checkpoint", "audit_prunerecord")
# Retention may delete from these, and only through `pruning()`.
PRUNABLE = ("audit_auditevent", "audit_chainlink")
# The transaction-local PostgreSQL setting the trigger function accepts a DELETE under.
PG_PRUNE_SETTING = "callvault.audit_prune"

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION callvault_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_ARGV[0] = 'prunable'
       AND current_setting('{PG_PRUNE_SETTING}', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'callvault: % is append-only, % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""


def _pg_triggers(table: str) -> list[str]:
    arg = "prunable" if table in PRUNABLE else "fixed"
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION callvault_audit_append_only('{arg}')",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION callvault_audit_append_only('fixed')",
    ]


def _sqlite_triggers(table: str, operations: tuple[str, ...] = ("UPDATE", "DELETE")) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'callvault: {table} is append-only, {op} refused'); END"
        for op in operations
    ]


def install_sql(vendor: str) -> list[str]:
    """The statements that install every trigger."""
    if vendor == "postgresql":
        return [PG_FUNCTION] + [s for t in TABLES for s in _pg_triggers(t)]
    return [s for t in TABLES for s in _sqlite_triggers(t)]


def drop_sql(vendor: str) -> list[str]:
    """The statements that remove every trigger (what an attacker with DB rights runs)."""
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {t}_{kind} ON {t}"
            for t in TABLES
            for kind in ("append_only", "no_truncate")
        ] + ["DROP FUNCTION IF EXISTS callvault_audit_append_only()"]
    return [f"DROP TRIGGER IF EXISTS {t}_no_{op}" for t in TABLES for op in ("update", "delete")]


def install(schema_editor: Any) -> None:
    """Migration step: install the triggers."""
    for statement in install_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def uninstall(schema_editor: Any) -> None:
    """Migration step backwards: remove them."""
    for statement in drop_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


@contextlib.contextmanager
def pruning() -> Iterator[None]:
    """Allow DELETE on events and links for the rest of the current transaction.

    PostgreSQL: a transaction-local setting the trigger function checks. SQLite: the DELETE
    triggers are dropped and re-created inside the same transaction (SQLite's DDL is
    transactional, so no other connection ever sees them missing).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("pruning() must run inside transaction.atomic()")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config(%s, 'on', true)", [PG_PRUNE_SETTING])
            yield
            # On an error the rollback discards the setting with everything else.
            cursor.execute("SELECT set_config(%s, 'off', true)", [PG_PRUNE_SETTING])
            return
        for table in PRUNABLE:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        yield
        for table in PRUNABLE:
            for statement in _sqlite_triggers(table, ("DELETE",)):
                cursor.execute(statement)
