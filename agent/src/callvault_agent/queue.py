"""The on-disk outbox: heartbeats and screenshots wait here, in SQLite, until the server has them.

Everything is written before it is sent and deleted only after the server accepted it (or
refused it for good), so a crash, a restart or a server that is down loses nothing.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heartbeats (
    seq INTEGER PRIMARY KEY,
    item TEXT NOT NULL,
    retimed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS screenshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    taken_at TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mime TEXT NOT NULL,
    image BLOB NOT NULL,
    retimed INTEGER NOT NULL DEFAULT 0
);
"""
# Columns added after the first release: a queue file written by it gets them on opening.
ADDED_COLUMNS = (
    ("heartbeats", "retimed", "INTEGER NOT NULL DEFAULT 0"),
    ("screenshots", "retimed", "INTEGER NOT NULL DEFAULT 0"),
)


@dataclass(frozen=True)
class Heartbeat:
    """One queued heartbeat, exactly as it goes to the server."""

    seq: int
    item: dict[str, Any]
    retimed: int = 0  # how often its time was moved for a server that found it in the future


@dataclass(frozen=True)
class Screenshot:
    """One queued screenshot."""

    id: int
    client_id: str
    taken_at: str
    width: int
    height: int
    mime: str
    image: bytes
    retimed: int = 0


class Outbox:
    """The queue file; one connection, used from the agent's single thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        # FULL: an item the agent has counted as queued survives a power cut too.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        for table, column, declaration in ADDED_COLUMNS:
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # heartbeats

    def add_heartbeat(self, item: dict[str, Any]) -> int:
        """Queue a heartbeat under the next sequence number (never reused) and return it."""
        with self._transaction():
            seq = self._next_seq()
            self.db.execute("INSERT INTO heartbeats (seq, item) VALUES (?, ?)", (seq, _dump(item)))
            self._set("next_seq", seq + 1)
        return seq

    def heartbeats(self, limit: int) -> list[Heartbeat]:
        """The oldest queued heartbeats, in sequence order, each with its `seq` set."""
        rows = self.db.execute(
            "SELECT seq, item, retimed FROM heartbeats ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [
            Heartbeat(seq, {**json.loads(item), "seq": seq}, retimed) for seq, item, retimed in rows
        ]

    def remove_heartbeats(self, seqs: list[int]) -> None:
        with self._transaction():
            self.db.executemany("DELETE FROM heartbeats WHERE seq = ?", [(s,) for s in seqs])

    def retime_heartbeats(self, times: dict[int, str]) -> None:
        """Give heartbeats (by seq) a new `at`, counting the move; their seq stays."""
        with self._transaction():
            for seq, at in times.items():
                row = self.db.execute(
                    "SELECT item FROM heartbeats WHERE seq = ?", (seq,)
                ).fetchone()
                if row is None:
                    continue
                item = {**json.loads(row[0]), "at": at}
                self.db.execute(
                    "UPDATE heartbeats SET item = ?, retimed = retimed + 1 WHERE seq = ?",
                    (_dump(item), seq),
                )

    def renumber_after(self, last_seq: int) -> None:
        """The server has seen sequence numbers up to `last_seq` that this queue never sent
        (the queue file was lost or restored): move every queued item past them, in order."""
        with self._transaction():
            rows = self.db.execute("SELECT item, retimed FROM heartbeats ORDER BY seq").fetchall()
            self.db.execute("DELETE FROM heartbeats")
            self.db.executemany(
                "INSERT INTO heartbeats (seq, item, retimed) VALUES (?, ?, ?)",
                [(last_seq + 1 + i, item, retimed) for i, (item, retimed) in enumerate(rows)],
            )
            self._set("next_seq", last_seq + 1 + len(rows))

    def heartbeat_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM heartbeats").fetchone()[0])

    # screenshots

    def add_screenshot(
        self, *, taken_at: str, width: int, height: int, mime: str, image: bytes
    ) -> str:
        """Queue a screenshot under a new client id (the server's de-duplication key)."""
        client_id = str(uuid.uuid4())
        with self._transaction():
            self.db.execute(
                "INSERT INTO screenshots (client_id, taken_at, width, height, mime, image)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (client_id, taken_at, width, height, mime, image),
            )
        return client_id

    def oldest_screenshot(self) -> Screenshot | None:
        row = self.db.execute(
            "SELECT id, client_id, taken_at, width, height, mime, image, retimed"
            " FROM screenshots ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return Screenshot(
            id=row[0],
            client_id=row[1],
            taken_at=row[2],
            width=row[3],
            height=row[4],
            mime=row[5],
            image=bytes(row[6]),
            retimed=row[7],
        )

    def remove_screenshot(self, shot_id: int) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM screenshots WHERE id = ?", (shot_id,))

    def retime_screenshot(self, shot_id: int, taken_at: str) -> None:
        """Give a screenshot a new `taken_at`, counting the move; its client id stays."""
        with self._transaction():
            self.db.execute(
                "UPDATE screenshots SET taken_at = ?, retimed = retimed + 1 WHERE id = ?",
                (taken_at, shot_id),
            )

    def screenshot_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM screenshots").fetchone()[0])

    def screenshot_bytes(self) -> int:
        row = self.db.execute("SELECT coalesce(sum(length(image)), 0) FROM screenshots").fetchone()
        return int(row[0])

    # internals

    def _next_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(row[0]) if row else 1

    def _set(self, key: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _dump(item: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in item.items() if k != "seq"}, separators=(",", ":"))


class Backoff:
    """Exponential back-off with jitter after a failed send; reset by a success.

    The n-th consecutive failure waits a random time between half and all of
    min(cap, base * 2**(n-1)) seconds, so agents that lost the same server do not return to it
    in step.
    """

    def __init__(
        self,
        base: float = 2.0,
        cap: float = 120.0,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock or time.monotonic
        self.rng = rng or random.Random()
        self.failures = 0
        self.not_before = 0.0

    def ready(self) -> bool:
        return self.clock() >= self.not_before

    def failed(self, at_least: float = 0.0) -> float:
        """Record a failure; returns the wait before the next try (at least `at_least`,
        for a server's Retry-After)."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        delay = max(at_least, self.rng.uniform(ceiling / 2, ceiling))
        self.not_before = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0

    def wait(self) -> float:
        """Seconds until the next try is allowed (0 when it is)."""
        return max(0.0, self.not_before - self.clock())
