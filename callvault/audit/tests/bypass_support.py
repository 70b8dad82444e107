"""Helpers for the tests of the bypass triggers (here and in telephony)."""

from __future__ import annotations

from typing import Any

from django.db import connection


def sql(statement: str, params: list[Any] | None = None) -> None:
    """One statement in its own transaction, as a database console would run it."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def bypass_calls() -> int:
    """How often the bypass function has run in this database (PostgreSQL, with
    track_functions = 'pl' set in the session)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT COALESCE(sum(calls), 0) FROM pg_stat_user_functions "
            "WHERE funcname = 'callvault_audit_bypass'"
        )
        (calls,) = cursor.fetchone()
    return int(calls)
