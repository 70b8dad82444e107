"""Turn CALLVAULT_DATABASE_URL into Django's DATABASES entry (sqlite:/// and postgres:// only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def database_from_url(url: str, *, conn_max_age: int) -> dict[str, Any]:
    """Django settings for one database URL; unknown schemes are refused by name."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/path.db, sqlite:////absolute/path.db (the usual convention)
        path = unquote(url[len("sqlite:///") :].split("?", 1)[0])
        if not path:
            raise ImproperlyConfigured("CALLVAULT_DATABASE_URL: sqlite:/// needs a file path")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # Reopening the file and re-running the PRAGMAs per request cost ~20% of a lead.
            "CONN_MAX_AGE": conn_max_age,
            # Writers wait for the lock instead of failing; IMMEDIATE makes a transaction
            # take the write lock at BEGIN, so claims and counters cannot deadlock.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            # A new authenticated connection per request made lead intake 9.4x slower
            # (docs/benchmarks.md), so connections persist and are health-checked.
            "CONN_MAX_AGE": conn_max_age,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"CALLVAULT_DATABASE_URL: unsupported scheme {parts.scheme!r} (use sqlite:// or postgres://)"
    )
