"""What the benchmark scripts share: running the product's commands and a throw-away
PostgreSQL database on this machine (never another address)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address the benchmarks ever talk to
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"


def run_checked(cmd: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run a command, return its stdout; fail loudly with its output."""
    proc = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh database on 127.0.0.1 for the run, dropped afterwards (also on error)."""
    import psycopg
    from psycopg import sql

    def admin(statement: sql.Composed) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    ident = sql.Identifier(name)
    admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    admin(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield f"postgres://postgres@{HOST}:5432/{name}"
    finally:
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
