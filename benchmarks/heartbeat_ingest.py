"""Heartbeat ingestion into PostgreSQL: 500 simulated agents, batched, through the product's
ingestion action against a bare insert of the same rows, in the same run.

    .venv/bin/python benchmarks/heartbeat_ingest.py [--agents 500] [--workers 4]
        [--rounds 10] [--batch 12]

Each agent is an enrolled device of its own member (made with the product's actions). A
round is one batch per agent: `--batch` heartbeats five seconds apart (12 = the minute an
agent queues between sends), generated from a seeded state machine: mostly active in one
program, the window title changing now and then, idle stretches. The agents are split over
`--workers` OS processes (multiprocessing, spawn), each with its own Django and database
connection, and every round runs two phases, all workers at once between barriers, the
order alternating round by round (ABBA):

- product: `callvault.monitoring.heartbeats.do_ingest_heartbeats(device, beats)`, the
  action the HTTP endpoint calls once it has authenticated the device and parsed the JSON
  (neither is timed: this measures the ingestion, not the web stack). It locks the device
  row, drops what is at or below its last seq, merges the batch into spans (ActivityWatch's
  heartbeat merge), updates the span it extends, bulk-inserts the new ones and moves the
  device's seq and last seen. The device table's audit bypass triggers are installed, as in
  production;
- bare insert: the same heartbeats written one row each into the same table
  (`monitoring_activityspan`, same indexes and foreign keys) with psycopg's `executemany`
  (pipelined, no COPY), one transaction per batch, against a second device per agent (so the
  bare rows never become the product's "newest span"). No merge, no dedupe, no lock.

It prints heartbeats per second of each phase (heartbeats / the phase's wall time, summed
over rounds), the ratio product/bare, and the rows each side wrote (the product writes a
span per change, the bare insert a row per heartbeat). The database `callvault_hbbench` on
127.0.0.1:5432 is created for the run and dropped afterwards (also on failure).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database  # noqa: E402

DB_NAME = "callvault_hbbench"
PHASES = ("product", "bare")
APPS = ["crm", "firefox", "thunderbird", "softphone", "excel"]
START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
BARE_SQL = (
    "INSERT INTO monitoring_activityspan "
    "(device_id, membership_id, project_id, started_at, ended_at, state, app, title) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def setup_django(database_url: str, data_dir: str) -> None:
    os.environ.update(
        {
            "CALLVAULT_DATA_DIR": data_dir,
            "CALLVAULT_TESTING": "1",  # a generated key ring in the data folder
            "CALLVAULT_HTTPS": "0",
            "CALLVAULT_SECRET_KEY": "bench-" + "x" * 60,
            "CALLVAULT_DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "callvault.settings",
        }
    )
    import django

    django.setup()


def seed(agents: int) -> list[tuple[int, int, int, int]]:
    """A project and `agents` operators, each with a product device and a bare device:
    (product device id, bare device id, membership id, project id) per agent."""
    from django.conf import settings

    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.accounts.models import Role
    from callvault.audit.context import system_run
    from callvault.monitoring.actions import (
        do_create_enrolment_code,
        do_enrol_device,
        find_code,
    )

    # Seeding 500 members with Argon2 would take minutes; the hash is not what is measured.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    out = []
    with system_run("hbbench"):
        project = do_create_project("Bench", "bench")
        for i in range(agents):
            user = do_create_user(f"op{i}", "x" * 20, validate=False)
            member = do_add_member(project, user, Role.OPERATOR)
            devices = []
            for host in (f"pc-{i}", f"bare-{i}"):
                _row, code = do_create_enrolment_code(member)
                row = find_code(code)
                assert row is not None
                enrolled = do_enrol_device(
                    row, hostname=host, platform="linux-x11", agent_version="bench"
                )
                devices.append(enrolled.device.pk)
            out.append((devices[0], devices[1], member.pk, project.pk))
    return out


def batch_of(agent: int, round_no: int, size: int) -> list[tuple[int, datetime, str, Any, Any]]:
    """The agent's heartbeats of one round: (seq, at, state, app, title), reproducible."""
    rng = random.Random(agent * 100_003 + round_no)
    first = START + timedelta(seconds=5 * size * round_no)
    app, title, idle = rng.choice(APPS), f"Order {rng.randrange(1000, 9999)}", 0
    beats = []
    shown: tuple[str | None, str | None]
    for k in range(size):
        if idle:
            idle -= 1
            state, shown = "idle", (None, None)
        else:
            if rng.random() < 0.04:
                idle = rng.randrange(2, 8)
            if rng.random() < 0.15:
                app = rng.choice(APPS) if rng.random() < 0.3 else app
                title = f"Order {rng.randrange(1000, 9999)}"
            state, shown = "active", (app, title)
        seq = round_no * size + k + 1
        beats.append((seq, first + timedelta(seconds=5 * k), state, *shown))
    return beats


def worker(
    agents: list[tuple[int, tuple[int, int, int, int]]],
    env: dict[str, str],
    rounds: int,
    size: int,
    barrier: Any,
) -> None:
    """One process: its agents' batches, phase by phase between the barriers."""
    setup_django(env["url"], env["data"])
    from django.db import connection, transaction

    from callvault.monitoring.heartbeats import Heartbeat, do_ingest_heartbeats
    from callvault.monitoring.models import Device

    connection.force_debug_cursor = False
    devices = {
        d.pk: d
        for d in Device.objects.select_related("project__monitoring_policy").filter(
            pk__in=[a[1][0] for a in agents]
        )
    }
    for round_no in range(rounds):
        for phase in phase_order(round_no):
            batches = [(a, ids, batch_of(a, round_no, size)) for a, ids in agents]
            barrier.wait()
            for _agent, (product_id, bare_id, member_id, project_id), beats in batches:
                if phase == "product":
                    do_ingest_heartbeats(devices[product_id], [Heartbeat(*b) for b in beats])
                else:
                    rows = [
                        (bare_id, member_id, project_id, at, at, state, app, title)
                        for _seq, at, state, app, title in beats
                    ]
                    with transaction.atomic(), connection.cursor() as cursor:
                        cursor.executemany(BARE_SQL, rows)
            barrier.wait()
    connection.close()


def phase_order(round_no: int) -> tuple[str, str]:
    """ABBA: the product first in rounds 0, 3, 4, 7, 8, ..."""
    return PHASES if round_no % 4 in (0, 3) else PHASES[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=12, help="heartbeats per batch")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="callvault-hbbench-")
    with postgres_database(DB_NAME) as url:
        setup_django(url, data)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        ids = seed(args.agents)
        print(
            f"seeded {args.agents} agents (two devices each) in "
            f"{time.perf_counter() - started:.1f} s; PostgreSQL "
            f"{connection.cursor().connection.info.server_version}; {os.cpu_count()} CPUs"
        )
        connection.close()
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(args.workers + 1)
        shares = [list(enumerate(ids))[w :: args.workers] for w in range(args.workers)]
        env = {"url": url, "data": data}
        procs = [
            ctx.Process(target=worker, args=(share, env, args.rounds, args.batch, barrier))
            for share in shares
        ]
        for proc in procs:
            proc.start()
        spent = dict.fromkeys(PHASES, 0.0)
        for round_no in range(args.rounds):
            for phase in phase_order(round_no):
                barrier.wait(timeout=600)
                began = time.perf_counter()
                barrier.wait(timeout=600)
                spent[phase] += time.perf_counter() - began
        for proc in procs:
            proc.join(timeout=60)
        if any(proc.exitcode != 0 for proc in procs):
            raise SystemExit("a worker failed")
        report(args, ids, spent)


def report(
    args: argparse.Namespace, ids: list[tuple[int, int, int, int]], spent: dict[str, float]
) -> None:
    from django.db import connection

    beats = args.agents * args.rounds * args.batch
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM monitoring_activityspan WHERE device_id = ANY(%s)",
            [[i[0] for i in ids]],
        )
        product_rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM monitoring_activityspan WHERE device_id = ANY(%s)",
            [[i[1] for i in ids]],
        )
        bare_rows = cursor.fetchone()[0]
    rates = {phase: beats / spent[phase] for phase in PHASES}
    print(
        f"{args.agents} agents, {args.workers} worker processes, {args.rounds} rounds, "
        f"batches of {args.batch}: {beats} heartbeats per side"
    )
    print(f"  product (do_ingest_heartbeats): {rates['product']:10.0f} heartbeats/s "
          f"({spent['product']:.2f} s), {product_rows} span rows")  # fmt: skip
    print(f"  bare insert (executemany):      {rates['bare']:10.0f} heartbeats/s "
          f"({spent['bare']:.2f} s), {bare_rows} rows")  # fmt: skip
    print(f"  ratio product / bare: {rates['product'] / rates['bare']:.2f}")


if __name__ == "__main__":
    main()
