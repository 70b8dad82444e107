"""Test support for the append-only triggers.

Transactional tests end with Django's flush, which empties every table with TRUNCATE
(PostgreSQL) or DELETE (SQLite): exactly what the triggers refuse. The fixture below
drops them before that flush and puts them back before the next transactional test;
tests that check the triggers themselves call `ensure_triggers()` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from callvault.audit import appendonly


def triggers_installed() -> bool:
    """Whether the event table's trigger is in place."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'audit_auditevent_append_only'")
        else:
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' "
                "AND name = 'audit_auditevent_no_update'"
            )
        return cursor.fetchone() is not None


def drop_triggers() -> None:
    """Remove every audit trigger (what an attacker with rights on the database does)."""
    with connection.cursor() as cursor:
        for statement in appendonly.drop_sql(connection.vendor):
            cursor.execute(statement)


def ensure_triggers() -> None:
    """Install the triggers if a flush (or a test) removed them."""
    if triggers_installed():
        return
    drop_triggers()  # a partial set would make the CREATEs fail
    with connection.cursor() as cursor:
        for statement in appendonly.install_sql(connection.vendor):
            cursor.execute(statement)


def _transactional(request: Any) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(
        {"transactional_db", "live_server"} & set(request.fixturenames)
        or (marker is not None and marker.kwargs.get("transaction"))
    )


@pytest.fixture(autouse=True)
def audit_triggers_allow_flush(request: Any) -> Iterator[None]:
    """Around a transactional test: triggers in place during it, dropped for the flush."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    ensure_triggers()
    # On SQLite the previous flush's own DELETEs were parked as pending changes.
    sql("DELETE FROM audit_pendingchange")
    yield
    drop_triggers()


def sql(statement: str, params: list[Any] | None = None) -> None:
    """One raw statement, as someone at the database console would run it."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def make_event(**fields: Any) -> Any:
    """An event with the given fields (an explicit id or an old time), as the app stores it."""
    from django.utils import timezone

    from callvault.audit.models import AuditEvent

    values: dict[str, Any] = {
        "created_at": timezone.now(),
        "project_id": None,
        "actor_kind": "system",
        "actor_name": "system",
        "action": "test.event",
        "changes": {"status": ["new", "done"]},
        "extra": {"n": 1},
    }
    values.update(fields)
    return AuditEvent.objects.create(**values)
