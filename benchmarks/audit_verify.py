"""`callvault audit verify` on 1,000,000 events: events per second, against a plain SHA-256
baseline over the same rows read in the same batches, on PostgreSQL and SQLite.

    .venv/bin/python benchmarks/audit_verify.py [--events 1000000] [--database both] [--rounds 3]

For each database a fresh one is made for the run (PostgreSQL: `callvault_auditbench` on
127.0.0.1:5432, user postgres, trust auth, created and dropped; SQLite: a file in a temporary
data folder), migrated with `callvault migrate`, and filled by SQL with N events over 90 days
in 11 chains (10 projects and the system chain) with realistic fields: actions, actors,
before -> after changes as JSON, an address, a user agent, a request id. Then:

- **seal**: `seal_pending()` links all of them (the worker's job), timed once;
- **verify**: `verify()` as `callvault audit verify` runs it, with one signed checkpoint
  per chain, so signatures and checkpoint comparisons are included;
- **read**: the verifier's keyset-batched query alone (links joined to events), rows fetched
  and dropped: the floor any verifier over this database pays;
- **sha256**: the same reads, each row turned into the same canonical JSON and hashed with
  SHA-256 (no chain, no checks): the baseline the issue asks for.

read / sha256 / verify run in interleaved rounds; figures are medians, as events per second
of wall-clock time, and the ratio verify / sha256 is the verifier's own overhead. Each
database is measured in a child process of this script (Django is set up once per process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database  # noqa: E402

DB_NAME = "callvault_auditbench"
PROJECTS = 10
BATCH = 10_000

# One INSERT ... SELECT over a series n = 1..N; the expressions work on both databases
# (SQLite gets its series from a recursive CTE, PostgreSQL from generate_series).
COLUMNS = (
    "created_at, project_id, actor_kind, actor_id, actor_name, action, object_type, "
    "object_id, object_repr, changes, extra, ip, user_agent, request_id"
)
ACTIONS = ["order.status", "order.update", "order.view", "phone.reveal", "call.start"]


def values_sql(vendor: str) -> str:
    """The SELECT list of the fill, for a series column n."""
    action = "CASE n % 5 " + " ".join(f"WHEN {i} THEN '{a}'" for i, a in enumerate(ACTIONS))
    action += " END"
    if vendor == "postgresql":
        created = "now() - interval '90 days' + n * (interval '90 days' / {events})"
        text = "n::text"
        changes = """jsonb_build_object('status', jsonb_build_array('new', 'accepted'),
            'comment', jsonb_build_array('', 'call back after ' || (n % 24)::text))"""
        extra = "jsonb_build_object('duration', n % 300, 'queue', 'main')"
        ip = "('10.0.' || (n % 200)::text || '.' || (n % 250)::text)::inet"
        project = f"NULLIF(n % {PROJECTS + 1}, 0)"
    else:
        created = (
            "strftime('%Y-%m-%d %H:%M:%f', 'now', '-90 days', "
            "'+' || (n * 7776000.0 / {events}) || ' seconds')"
        )
        text = "CAST(n AS TEXT)"
        changes = (
            "json_object('status', json_array('new', 'accepted'), "
            "'comment', json_array('', 'call back after ' || (n % 24)))"
        )
        extra = "json_object('duration', n % 300, 'queue', 'main')"
        ip = "'10.0.' || (n % 200) || '.' || (n % 250)"
        project = f"NULLIF(n % {PROJECTS + 1}, 0)"
    return (
        f"{created}, {project}, 'member', {text}, 'operator ' || {text}, {action}, 'order', "
        f"{text}, 'Order ' || {text}, {changes}, {extra}, {ip}, "
        "'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', md5(" + text + ")"
    )


def fill(events: int) -> int:
    """Insert the events by SQL, in chunks (SQLite) or one statement (PostgreSQL)."""
    from django.db import connection, transaction

    vendor = connection.vendor
    # No parameters: the statement is built from constants and a number, and its `%` are SQL.
    select = values_sql(vendor).replace("{events}", str(int(events)))
    with transaction.atomic(), connection.cursor() as cur:
        if vendor == "postgresql":
            cur.execute(
                f"INSERT INTO audit_auditevent ({COLUMNS}) "  # noqa: S608 (constants)
                f"SELECT {select} FROM generate_series(1, {int(events)}) AS n"
            )
            cur.execute("ANALYZE audit_auditevent")
            return events
        # md5 does not exist in SQLite: a request id from the number is as good for the bench.
        select = select.replace(f"md5({'CAST(n AS TEXT)'})", "printf('%032x', n * 2654435761)")
        cur.execute(
            f"INSERT INTO audit_auditevent ({COLUMNS}) "  # noqa: S608 (constants)
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {int(events)}) SELECT {select} FROM s"
        )
        cur.execute("ANALYZE")
    return events


def timed(run: Callable[[], int]) -> tuple[float, int]:
    """(seconds, rows) of one call."""
    started = time.perf_counter()
    rows = run()
    return time.perf_counter() - started, rows


def child(args: argparse.Namespace) -> int:
    """Measure one database (this process's settings point at it)."""
    import django

    django.setup()
    from django.db import connection

    from callvault.audit import chain, checkpoints, verify

    t_fill, _ = timed(lambda: fill(args.events))
    t_seal, sealed = timed(chain.seal_pending)
    assert sealed == args.events, f"sealed {sealed} of {args.events}"
    checkpoints.write_checkpoints()
    keys = verify.trusted_keys([])

    def run_read() -> int:
        return sum(1 for _ in verify._links(BATCH))

    def run_sha() -> int:
        n = 0
        for row in verify._links(BATCH):
            chain.content_hash(chain.canonical_event(row[5:]))
            n += 1
        return n

    def run_verify() -> int:
        report = verify.verify(keys=keys, batch_size=BATCH)
        assert report.ok, report.problems[:3]
        return report.links

    variants = {"read": run_read, "sha256": run_sha, "verify": run_verify}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants)[r % 3 :] + list(variants)[: r % 3]
        for name in order:
            seconds, rows = timed(variants[name])
            assert rows == args.events
            times[name].append(seconds)
    label = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    with connection.cursor() as cur:
        cur.execute("SELECT version()" if label == "PostgreSQL" else "SELECT sqlite_version()")
        version = cur.fetchone()[0].split(" on ")[0]
    print(f"\n{label} ({version}), {args.events:,} events in {PROJECTS + 1} chains")
    print(f"  fill (SQL)            {t_fill:7.1f} s")
    print(f"  seal_pending          {t_seal:7.1f} s  {args.events / t_seal:>10,.0f} events/s")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        spread = f"{min(times[name]):.1f}-{max(times[name]):.1f}"
        print(
            f"  {name:<8} (median of {len(times[name])}) {seconds:6.1f} s "
            f"{args.events / seconds:>10,.0f} events/s   (range {spread} s)"
        )
    print(
        f"  verify / sha256 baseline: {medians['verify'] / medians['sha256']:.2f}x the time; "
        f"read alone is {medians['read'] / medians['verify']:.0%} of verify"
    )
    return 0


def run_child(database: str, args: argparse.Namespace) -> int:
    """Run this script for one database in a fresh process and data folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="callvault-auditbench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    env.update(
        {
            "CALLVAULT_DEBUG": "1",
            "CALLVAULT_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "callvault.settings",
            "PYTHONPATH": str(REPO),
        }
    )
    try:
        if database == "postgresql":
            with postgres_database(DB_NAME) as url:
                env["CALLVAULT_DATABASE_URL"] = url
                return _migrate_and_measure(env, args)
        return _migrate_and_measure(env, args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _migrate_and_measure(env: dict[str, str], args: argparse.Namespace) -> int:
    callvault = REPO / ".venv" / "bin" / "callvault"
    subprocess.run(
        [str(callvault), "migrate"], env=env, check=True, timeout=600, capture_output=True
    )
    command = [
        sys.executable,
        __file__,
        "--child",
        "--events",
        str(args.events),
        "--rounds",
        str(args.rounds),
    ]
    return subprocess.run(command, env=env, check=False, timeout=args.max_minutes * 60).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-minutes", type=float, default=30, help="per database")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    databases = ["postgresql", "sqlite"] if args.database == "both" else [args.database]
    return max(run_child(database, args) for database in databases)


if __name__ == "__main__":
    sys.exit(main())
