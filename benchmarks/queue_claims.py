"""Queue claims on PostgreSQL: 50 operators claiming side by side, against the ceiling.

    .venv/bin/python benchmarks/queue_claims.py [--duration 20] [--rounds 2]
        [--scenarios a,b] [--json FILE] [--strict]

50 OS processes (multiprocessing, 'spawn'), one per operator member; each sets up Django
itself (CALLVAULT_DEBUG=1, a temp CALLVAULT_DATA_DIR, a key ring file made once with
`callvault vault init`, the database `callvault_queuebench` on 127.0.0.1:5432, created for the
run and dropped afterwards, also on failure). Project, statuses, calling hours 00:00-23:59:59
and the operators are made with the product's actions; the orders are bulk-loaded with SQL.
The same processes run, on the same data reset (and vacuumed) before every run, in
interleaved rounds (ABBA):

- product: `claim_next_id(member)`, the claim inside "Next order": one statement
  (`callvault.orders.queue._CLAIM_SQL`) that reads the work rules, computes the customer's
  local time, locks the order and writes the audit event, sent with `prepare=True` on
  Django's connection. Timed alone: the claim latency. Triggers on, as in production;
- controls (skip with --no-controls): product_prepared, the same on a connection whose
  `prepare_threshold` is lifted from Django's None (with None psycopg ignores
  `prepare=True`; each process reports whether its session held prepared statements), and
  product_no_triggers, the same with triggers off for the session (what the audit bypass
  trigger costs the claim);
- ceiling: plain psycopg (autocommit, psycopg's automatic prepared statements), the bare
  one-statement claim `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)
  RETURNING id` (timed alone), with triggers off for its session (it is meant to be bare);
- product, its controls and the ceiling then mark the order done the same way, untimed:
  one round trip on the process's own connection, `BEGIN; UPDATE orders_order SET in_queue
  = false WHERE id = N; INSERT INTO audit_auditevent ...; COMMIT`: the order leaves the queue
  and the step records that, as the application would, so the product's bypass trigger
  finds the change attributed (the ceiling's session has triggers off, the step is the same
  SQL). A second connection per process would need 100+ connections, PostgreSQL's default
  limit; switching triggers off for the step's transaction (`SET LOCAL
  session_replication_role`), as this script did until 2026-11-29, empties the session's
  plan cache at every switch, so the product re-planned its prepared claim twice per order
  and the ceiling (replica throughout) never did;
- product + status (one run, for the record): `claim_next` then the product's
  `do_change_status` to "accepted", the operator's real turn, all with triggers on.

The coordinator's own connection bulk-loads and resets with `session_replication_role =
replica` (it connects as the superuser postgres), so neither the audit table's append-only
triggers nor the orders' bypass triggers fire for the benchmark's own housekeeping; which
triggers exist is printed at the start.

Scenarios: (a) 100,000 due orders; (b) 1,000,000 orders, 90% processed, 100,000 due. Each run
reports claims/s (claims started before the deadline / time until the last one ended), p50/p99
of the claim latency measured in the workers, CPU per claim of the workers and of their
PostgreSQL backends (from /proc), the CPUs the rest of the machine used meanwhile, double
claims (ids claimed twice in a run, from the workers' lists; for the product also
`order.claim` events per order > 1): must be 0, and "unattributed" audit events the bypass
triggers wrote during the run (the product records its own changes, so also 0). Target:
product claims/s >= 50% of the ceiling's, in both scenarios. Scenario (b) is also run briefly
with `order_queue_idx` dropped (then recreated) to show what the partial index buys.
`EXPLAIN (ANALYZE, BUFFERS)` (rolled back) is printed for the product's statement as it is
prepared on the connection, with its custom plan and with the generic plan a prepared
statement switches to, and for the ceiling. Django's debug cursor (query logging, on with
CALLVAULT_DEBUG=1) is switched off in the workers, as in production.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database, run_checked  # noqa: E402

TARGET_RATIO = 0.5
DUE = 100_000
PROJECT_SLUG = "queuebench"
PASSWORD = "correct horse battery staple 42"  # noqa: S105 (the bench operators' own)
# Customers' zones: mostly New York, a few others ("" = unknown, judged by the project's zone).
ZONE_MIX = (
    ["America/New_York"] * 14
    + ["America/Chicago", "America/Los_Angeles", "Europe/Moscow", "Asia/Yekaterinburg"]
    + ["Europe/London", ""]
)

CEILING_CLAIM = """
    UPDATE orders_order SET locked_by_id = %s, locked_until = now() + interval '15 min'
    WHERE id = (
        SELECT id FROM orders_order
        WHERE project_id = %s AND in_queue AND next_call_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
        ORDER BY queue_rank, next_call_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
"""
# The done step of product and ceiling: one simple-protocol round trip (several statements
# need it, so the id is inlined: an int from our own claim), its own transaction. It takes
# the order out of the queue and records that, as the application would, so the bypass
# trigger (on in the product's sessions) finds the change attributed. It used to switch
# triggers off with `SET LOCAL session_replication_role = replica` instead: every change of
# that setting empties the session's plan cache, so the product re-planned its prepared
# claim twice per order, while the ceiling's session (replica throughout) never did; that
# cost the product about 0.4 ms of database CPU per claim (docs/benchmarks.md).
BARE_DONE = (
    "BEGIN; UPDATE orders_order SET in_queue = false WHERE id = {id:d}; "
    "INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, actor_name, "
    "action, object_type, object_id, object_repr, changes, extra, ip, user_agent, request_id) "
    "SELECT now(), project_id, 'system', '', 'queue benchmark', 'order.bench_done', 'order', "
    "id::text, '', '{{}}', '{{}}', NULL, '', '' FROM orders_order WHERE id = {id:d}; COMMIT"
)
# The tables whose triggers other work adds (audit: append-only; orders: bypass); printed.
TRIGGER_TABLES = ("audit_auditevent", "orders_order")

MODE_LABELS = {
    "product": "claim_next_id as committed (Django's connection), triggers on; bare done",
    "product_prepared": "  control: same, prepared (the connection's prepare_threshold lifted)",
    "product_no_triggers": "  control: same with triggers off (what the bypass trigger costs)",
    "ceiling": "bare UPDATE ... SKIP LOCKED (psycopg, autocommit, triggers off); bare done",
    "product_status": "claim_next + do_change_status(accepted), triggers on",
}


# ---- small helpers --------------------------------------------------------------------------


def bin_path(name: str) -> Path:
    """A console script of the virtualenv this benchmark runs under (else the repo's .venv)."""
    here = Path(sys.executable).parent / name
    return here if here.exists() else REPO / ".venv" / "bin" / name


def bench_env(data_dir: Path, database_url: str) -> dict[str, str]:
    """The environment of every callvault process of the run (workers inherit it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLVAULT_") and k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}
    }
    env.update(
        {
            "CALLVAULT_DEBUG": "1",
            "CALLVAULT_DATA_DIR": str(data_dir),
            "CALLVAULT_DATABASE_URL": database_url,
            "CALLVAULT_KEYRING_FILE": str(data_dir / "keyring.json"),
            "CALLVAULT_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SETTINGS_MODULE": "callvault.settings",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal (guest time is already inside user)
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ---- the worker process (one operator) -------------------------------------------------------


def done_bare(raw: Any, order_id: int) -> None:
    """Mark a claimed order finished: the same step after every claim of product and ceiling."""
    raw.execute(BARE_DONE.format(id=int(order_id)), prepare=False)


@dataclass
class Mode:
    """What one operator process runs in one mode, on the one connection it holds."""

    claim: Callable[[], Any]  # returns None when nothing is due
    done: Callable[[Any], None]
    raw: Callable[[], Any]  # the psycopg connection the claim runs on
    close: Callable[[], None]


def _build_mode(mode: str, member: Any, accepted: Any, dsn: str) -> Mode:
    """The claim and done step of a mode, with its connection opened before the start."""
    from django.conf import settings
    from django.db import connection

    from callvault.orders.actions import do_change_status
    from callvault.orders.queue import claim_next, claim_next_id

    settings.DEBUG = False  # the debug cursor would log every query, as production does not
    connection.close()

    if mode in {"product", "product_prepared", "product_no_triggers", "product_status"}:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '60s'")
            if mode == "product_no_triggers":
                cursor.execute("SET session_replication_role = replica")
        if mode == "product_prepared":
            # Django opens psycopg connections with prepare_threshold=None, which makes
            # psycopg ignore the claim's prepare=True; lifted here to measure the fix.
            # Django's own cursors bind client-side and are never prepared either way.
            connection.connection.prepare_threshold = 5

        def raw() -> Any:
            return connection.connection

        def done_status(order: Any) -> None:
            do_change_status(order, accepted)

        if mode == "product_status":  # the status change needs the order itself
            return Mode(lambda: claim_next(member), done_status, raw, connection.close)
        return Mode(
            lambda: claim_next_id(member),
            lambda order_id: done_bare(connection.connection, order_id),
            raw,
            connection.close,
        )

    # The ceiling: plain psycopg in autocommit, prepared statements after 5 runs (psycopg's
    # default), triggers off for the session: a bare statement, nothing else.
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, prepare_threshold=5)
    conn.execute("SET statement_timeout = '60s'")
    conn.execute("SET session_replication_role = replica")

    def claim_bare() -> int | None:
        row = conn.execute(CEILING_CLAIM, (member.user_id, member.project_id)).fetchone()
        return int(row[0]) if row else None

    return Mode(claim_bare, lambda order_id: done_bare(conn, order_id), lambda: conn, conn.close)


def _run_loop(
    claim: Callable[[], Any],
    done: Callable[[Any], None],
    backend_pid: int,
    start_wall: float,
    deadline_wall: float,
) -> dict[str, Any]:
    """Claim and finish orders from start to deadline; time the claim alone."""
    ids, claim_s, done_s = array("q"), array("d"), array("d")
    errors, first_error, drained = 0, "", False
    delay = start_wall - time.time()
    if delay > 0:
        time.sleep(delay)
    cpu0, db0 = self_cpu(), proc_cpu(backend_pid)
    clock = time.perf_counter
    deadline = clock() + (deadline_wall - time.time())
    while True:
        t0 = clock()
        if t0 >= deadline:
            break
        try:
            got = claim()
            t1 = clock()
            if got is None:
                drained = True
                break
            done(got)
            t2 = clock()
        except Exception as exc:  # counted and reported; the run goes on
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:400]
            if errors >= 20:
                break
            continue
        ids.append(int(getattr(got, "pk", got)))
        claim_s.append(t1 - t0)
        done_s.append(t2 - t1)
    end_wall = time.time()
    return {
        "ids": ids.tobytes(),
        "claim_s": claim_s.tobytes(),
        "done_s": done_s.tobytes(),
        "end": end_wall,
        "drained": drained,
        "errors": errors,
        "first_error": first_error,
        "app_cpu": self_cpu() - cpu0,
        "db_cpu": proc_cpu(backend_pid) - db0,
    }


def worker_main(idx: int, member_id: int, dsn: str, cmd_q: Any, res_q: Any) -> None:
    """One operator: set up Django, then run what the coordinator asks until told to quit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us
    try:
        import django

        django.setup()
        from callvault.accounts.models import Membership
        from callvault.audit.context import Actor, AuditContext, use_context
        from callvault.audit.models import ActorKind
        from callvault.orders.models import Status

        member = Membership.objects.select_related("project", "user").get(pk=member_id)
        accepted = Status.objects.get(project_id=member.project_id, code="accepted")
        actor = Actor(ActorKind.MEMBER, str(member.user_id), member.user.username)
        res_q.put(("started", idx, None))
        while True:
            cmd = cmd_q.get()
            if cmd[0] == "quit":
                break
            _, mode, run_id = cmd
            run = _build_mode(mode, member, accepted, dsn)
            pid = int(run.raw().info.backend_pid)
            res_q.put(("ready", idx, None))
            go = cmd_q.get()
            if go[0] != "go":
                run.close()
                break
            ctx = AuditContext(actor=actor, request_id=run_id)
            with use_context(ctx):
                result = _run_loop(run.claim, run.done, pid, go[1], go[2])
            # Whether the session ended up with prepared statements (the claim's or the
            # ceiling's), as evidence of what was measured.
            result["prepared"] = int(
                run.raw().execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
            )
            run.close()
            res_q.put(("result", idx, result))
    except BaseException:
        res_q.put(("error", idx, traceback.format_exc()[-3000:]))
        raise


class Pool:
    """The operator processes, spawned once and reused for every run."""

    def __init__(self, member_ids: list[int], dsn: str) -> None:
        ctx = mp.get_context("spawn")
        self.res_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in member_ids]
        self.procs = [
            ctx.Process(
                target=worker_main,
                args=(i, member_id, dsn, self.cmd_qs[i], self.res_q),
                name=f"operator-{i}",
                daemon=True,
            )
            for i, member_id in enumerate(member_ids)
        ]

    def _collect(self, kind: str, timeout: float) -> list[Any]:
        out: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"timed out waiting for {kind} ({len(out)}/{len(self.procs)})")
            try:
                msg, idx, payload = self.res_q.get(timeout=min(remaining, 5))
            except queue_mod.Empty:
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"workers died: {dead[:5]}") from None
                continue
            if msg == "error":
                raise RuntimeError(f"worker {idx} failed:\n{payload}")
            if msg != kind:
                raise RuntimeError(f"worker {idx} sent {msg}, expected {kind}")
            out[idx] = payload
        return [out[i] for i in range(len(self.procs))]

    def start(self, timeout: float = 600) -> None:
        for proc in self.procs:
            proc.start()
        self._collect("started", timeout)

    def run(self, mode: str, seconds: float, run_id: str) -> list[dict[str, Any]]:
        for q in self.cmd_qs:
            q.put(("prepare", mode, run_id))
        self._collect("ready", 120)
        start = time.time() + 0.5
        for q in self.cmd_qs:
            q.put(("go", start, start + seconds))
        time.sleep(max(0.0, start - time.time()))
        busy0, _ = machine_cpu()
        results = self._collect("result", seconds + 180)
        busy1, _ = machine_cpu()
        for r in results:
            r["start"] = start
            r["machine_busy"] = busy1 - busy0
        return results

    def close(self) -> None:
        """Ask every worker to quit; terminate (by our own Process handle) any that linger."""
        for q in self.cmd_qs:
            with contextlib.suppress(Exception):
                q.put(("quit", None, None))
        deadline = time.monotonic() + 20
        for proc in self.procs:
            if proc.pid is None:
                continue
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


# ---- results ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of one mode."""

    scenario: str
    mode: str
    seconds: float
    claims: int
    double_claims: int
    audit_double: int | None
    audit_missing: int | None
    unattributed: int  # events the bypass triggers wrote during the run
    prepared_workers: int  # processes whose session held prepared statements at the end
    claim_p50_ms: float
    claim_p99_ms: float
    done_p50_ms: float
    app_cpu_ms: float
    db_cpu_ms: float
    drained: int
    errors: int
    first_error: str
    machine_busy_cpus: float = 0.0  # CPUs busy on the whole machine during the run
    ours_cpus: float = 0.0  # of which the workers and their backends

    @property
    def others_cpus(self) -> float:
        """Busy CPUs not ours: other work on the machine and PostgreSQL's own processes."""
        return max(0.0, self.machine_busy_cpus - self.ours_cpus)

    @property
    def rate(self) -> float:
        return self.claims / self.seconds if self.seconds > 0 else 0.0


def one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of a query that must return one."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row[0]


def summarize(
    scenario: str, mode: str, results: list[dict[str, Any]], admin: Any, run_id: str
) -> Run:
    ids: list[int] = []
    claim_s: list[float] = []
    done_s: list[float] = []
    for r in results:
        ids.extend(array("q", r["ids"]))
        claim_s.extend(array("d", r["claim_s"]))
        done_s.extend(array("d", r["done_s"]))
    start = results[0]["start"]
    seconds = max(r["end"] for r in results) - start
    claim_s.sort()
    done_s.sort()
    audit_double = audit_missing = None
    if mode != "ceiling":  # the product writes an order.claim event per claim
        row = admin.execute(
            "SELECT count(*), count(DISTINCT object_id) FROM audit_auditevent "
            "WHERE action = 'order.claim' AND request_id = %s",
            (run_id,),
        ).fetchone()
        audit_double = int(row[0]) - int(row[1])
        audit_missing = len(ids) - int(row[0])
    unattributed = one(
        admin, "SELECT count(*) FROM audit_auditevent WHERE actor_kind = 'unattributed'"
    )
    n = max(len(ids), 1)
    return Run(
        scenario=scenario,
        mode=mode,
        seconds=seconds,
        claims=len(ids),
        double_claims=len(ids) - len(set(ids)),
        audit_double=audit_double,
        audit_missing=audit_missing,
        unattributed=int(unattributed),
        prepared_workers=sum(1 for r in results if r.get("prepared")),
        claim_p50_ms=1000 * pct(claim_s, 50),
        claim_p99_ms=1000 * pct(claim_s, 99),
        done_p50_ms=1000 * pct(done_s, 50),
        app_cpu_ms=1000 * sum(r["app_cpu"] for r in results) / n,
        db_cpu_ms=1000 * sum(r["db_cpu"] for r in results) / n,
        drained=sum(1 for r in results if r["drained"]),
        errors=sum(r["errors"] for r in results),
        first_error=next((r["first_error"] for r in results if r["first_error"]), ""),
        machine_busy_cpus=results[0]["machine_busy"] / seconds,
        ours_cpus=sum(r["app_cpu"] + r["db_cpu"] for r in results) / seconds,
    )


def print_run(run: Run) -> None:
    audit = "" if run.audit_double is None else f" audit dup {run.audit_double}"
    if run.audit_missing:
        audit += f" audit missing {run.audit_missing}"
    if run.unattributed:
        audit += f" UNATTRIBUTED {run.unattributed}"
    print(
        f"  {run.mode:<16} {run.rate:8.0f} claims/s  p50 {run.claim_p50_ms:6.2f} ms"
        f"  p99 {run.claim_p99_ms:7.2f} ms  done p50 {run.done_p50_ms:5.2f} ms"
        f"  cpu/claim app {run.app_cpu_ms:.2f} + db {run.db_cpu_ms:.2f} ms"
        f"  claims {run.claims} in {run.seconds:.1f}s  double {run.double_claims}{audit}"
        f"  prepared in {run.prepared_workers} sessions"
        f"  machine busy {run.machine_busy_cpus:.2f} CPUs (others {run.others_cpus:.2f})"
        + (f"  drained x{run.drained}" if run.drained else "")
        + (f"  ERRORS {run.errors}: {run.first_error}" if run.errors else ""),
        flush=True,
    )


# ---- data -----------------------------------------------------------------------------------


@dataclass
class Data:
    """What the coordinator knows about the project."""

    project_id: int
    new_status: int
    accepted_status: int
    member_ids: list[int]
    base: datetime = field(default_factory=lambda: datetime.now(UTC))
    processed: int = 0
    audit_mark: int = 0  # the last audit event of the setup; later ones are the runs'


def setup_project(operators: int) -> Data:
    """Project, statuses, calling hours around the clock and the operators, the product's way."""
    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.accounts.models import Role
    from callvault.audit.models import AuditEvent
    from callvault.orders.actions import do_create_default_statuses
    from callvault.orders.models import WorkSettings
    from callvault.orders.setup_actions import do_update_work_settings

    project = do_create_project("Queue bench", PROJECT_SLUG, default_region="US")
    statuses = {s.code: s for s in do_create_default_statuses(project)}
    do_update_work_settings(
        WorkSettings.objects.get(project=project),
        calling_hours_start=dtime(0, 0),
        calling_hours_end=dtime(23, 59, 59),
    )
    member_ids = []
    for i in range(operators):
        user = do_create_user(f"op{i:02d}", PASSWORD, validate=False)
        member_ids.append(do_add_member(project, user, Role.OPERATOR).pk)
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return Data(
        project.pk, statuses["new"].pk, statuses["accepted"].pk, member_ids, audit_mark=mark
    )


def admin_connection(dsn: str) -> Any:
    """The coordinator's connection for loading and resetting: autocommit, and triggers off
    for this session (superuser only), so the benchmark's own housekeeping neither fires the
    audit triggers nor is refused by the append-only ones."""
    import psycopg

    admin = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    admin.execute("SET session_replication_role = replica")
    return admin


def triggers(admin: Any) -> dict[str, list[str]]:
    """The user-defined triggers on the tables other work guards with triggers."""
    rows = admin.execute(
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
        "WHERE NOT tgisinternal AND tgrelid::regclass::text = ANY(%s) ORDER BY 1, 2",
        (list(TRIGGER_TABLES),),
    ).fetchall()
    return {table: [name for t, name in rows if t == table] for table in TRIGGER_TABLES}


def load_orders(admin: Any, data: Data, total: int, due: int) -> float:
    """Replace the orders with `total` rows, the last `due` of them due now (SQL bulk load)."""
    t0 = time.monotonic()
    admin.execute("TRUNCATE orders_order CASCADE")
    admin.execute("DELETE FROM audit_auditevent WHERE id > %s", (data.audit_mark,))
    data.processed = total - due
    data.base = datetime.now(UTC) - timedelta(days=3)
    zones = "ARRAY[" + ",".join(f"'{z}'" for z in ZONE_MIX) + "]"
    admin.execute(
        f"""
        INSERT INTO orders_order (
            project_id, number, status_id, customer_name, phone_sealed, phone_index,
            phone_mask, customer_tz, address, source, utm_source, utm_medium, utm_campaign,
            utm_content, utm_term, partner_ref, next_call_at, attempts, in_queue, queue_rank,
            locked_by_id, locked_until, assigned_to_id, duplicate_of_id, version,
            created_at, updated_at)
        SELECT %(project)s, n,
            CASE WHEN n > %(processed)s THEN %(new)s ELSE %(accepted)s END,
            'Customer ' || n,
            'k1:' || encode(sha256(('seal' || n)::bytea), 'base64')
                  || encode(sha256(('more' || n)::bytea), 'base64'),
            encode(sha256(('index' || n)::bytea), 'hex'),
            '+1 *** ***-**' || lpad((n %% 100)::text, 2, '0'),
            ({zones})[1 + n %% {len(ZONE_MIX)}],
            'Street ' || n, 'bench', 'google', 'cpc', 'spring', '', '', '',
            CASE WHEN n > %(processed)s
                 THEN %(base)s + (n - %(processed)s) * interval '1 second' END,
            CASE WHEN n > %(processed)s THEN 0 ELSE 1 END,
            n > %(processed)s, 0, NULL, NULL, NULL, NULL, 1,
            now() - (%(total)s - n) * interval '1 second',
            now() - (%(total)s - n) * interval '1 second'
        FROM generate_series(1, %(total)s) AS n
        """,  # noqa: S608 (constants of this file only)
        {
            "project": data.project_id,
            "processed": data.processed,
            "new": data.new_status,
            "accepted": data.accepted_status,
            "base": data.base,
            "total": total,
        },
    )
    admin.execute("VACUUM (ANALYZE) orders_order")
    return time.monotonic() - t0


def reset_orders(admin: Any, data: Data) -> None:
    """Put every due order back in the queue as loaded; drop the runs' events and changes."""
    admin.execute(
        """
        UPDATE orders_order SET in_queue = true, queue_rank = 0, status_id = %(new)s,
            locked_by_id = NULL, locked_until = NULL, attempts = 0, version = 1,
            next_call_at = %(base)s + (number - %(processed)s) * interval '1 second'
        WHERE project_id = %(project)s AND number > %(processed)s
          AND (NOT in_queue OR locked_by_id IS NOT NULL OR version <> 1)
        """,
        {
            "new": data.new_status,
            "base": data.base,
            "processed": data.processed,
            "project": data.project_id,
        },
    )
    admin.execute("DELETE FROM audit_auditevent WHERE id > %s", (data.audit_mark,))
    admin.execute("DELETE FROM orders_statuschange")
    admin.execute("VACUUM (ANALYZE) orders_order, audit_auditevent, orders_statuschange")
    due = one(
        admin,
        "SELECT count(*) FROM orders_order WHERE project_id = %s AND in_queue "
        "AND locked_by_id IS NULL",
        (data.project_id,),
    )
    if due != DUE:
        raise RuntimeError(f"reset left {due} due orders, expected {DUE}")


def _param_order(sql: str) -> list[str]:
    """The names of a statement's %(name)s placeholders as psycopg numbers them ($1, $2...):
    in order of first appearance, a repeated name keeping its number."""
    return list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))


def explain_product(member_id: int) -> dict[str, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the product's claim statement, rolled back, as prepared on
    the connection by the product's own code path: the custom plan (planned for the values)
    and the generic plan PostgreSQL switches a prepared statement to after five runs when it
    costs no more than the custom ones."""
    import psycopg
    from django.db import connection, transaction
    from django.utils import timezone

    from callvault.accounts.models import Membership
    from callvault.orders.queue import _CLAIM_SQL, _claim_params

    member = Membership.objects.select_related("project", "user").get(pk=member_id)
    params = _claim_params(member, timezone.now())
    connection.close()  # a fresh session, closed again below
    connection.ensure_connection()
    raw = connection.connection
    raw.prepare_threshold = 5  # Django's None would make psycopg ignore prepare=True
    plans: dict[str, list[str]] = {}
    with transaction.atomic():
        # Prepared as _claim_postgresql prepares it: the same text, the parameter types psycopg
        # sends. A prepared statement outlives the rollback; it is dropped below.
        with psycopg.Cursor(raw) as cursor:
            cursor.execute(_CLAIM_SQL, params, prepare=True)
        name, types = raw.execute(
            "SELECT name, parameter_types::text FROM pg_prepared_statements "
            "WHERE NOT from_sql AND statement LIKE %s",
            ("%'order.claim'%",),
        ).fetchone()
        values = [params[n] for n in _param_order(_CLAIM_SQL)]
        if len(values) != len(types.strip("{}").split(",")):
            raise RuntimeError(f"{name} takes {types}, we have {len(values)} values")
        # EXECUTE takes the values as literals (client-side binding), in $n order.
        with psycopg.ClientCursor(raw) as cursor:
            for kind in ("custom", "generic"):
                cursor.execute(f"SET LOCAL plan_cache_mode = force_{kind}_plan")
                rows = cursor.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}("
                    + ", ".join(["%s"] * len(values))
                    + ")",
                    values,
                ).fetchall()
                plans[kind] = [r[0] for r in rows]
        transaction.set_rollback(True)
    connection.close()  # drops the prepared statement with the session
    return plans


def explain_ceiling(admin: Any, data: Data, user_id: int) -> list[str]:
    with admin.transaction(force_rollback=True):
        rows = admin.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + CEILING_CLAIM, (user_id, data.project_id)
        ).fetchall()
    return [r[0] for r in rows]


def print_plan(title: str, plan: list[str], lines: int = 40) -> None:
    print(f"  {title}:")
    for line in plan[:lines]:
        print(f"    {line}")


def explain_and_print(data: Data, report: dict[str, Any]) -> bool:
    """Print the product's plans into the report; True if both use order_queue_idx."""
    plans = explain_product(data.member_ids[0])
    uses = {kind: any("order_queue_idx" in line for line in p) for kind, p in plans.items()}
    for kind, plan in plans.items():
        verdict = "uses" if uses[kind] else "does NOT use"
        print_plan(
            f"EXPLAIN (ANALYZE, BUFFERS) of _CLAIM_SQL, {kind} plan ({verdict} order_queue_idx)",
            plan,
        )
    report["plans"] = plans
    report["plans_use_order_queue_idx"] = uses
    return all(uses.values())


# ---- the benchmark --------------------------------------------------------------------------


def interleaved(modes: list[str], rounds: int) -> list[str]:
    """ABBA...: each round reverses the order of the previous one."""
    out: list[str] = []
    for r in range(rounds):
        out.extend(modes if r % 2 == 0 else list(reversed(modes)))
    return out


def median_run(runs: list[Run]) -> dict[str, Any]:
    return {
        "claims_per_s": statistics.median(r.rate for r in runs),
        "rates": [round(r.rate) for r in runs],
        "p50_ms": statistics.median(r.claim_p50_ms for r in runs),
        "p99_ms": statistics.median(r.claim_p99_ms for r in runs),
        "p99s_ms": [round(r.claim_p99_ms, 1) for r in runs],
        "done_p50_ms": statistics.median(r.done_p50_ms for r in runs),
        "app_cpu_ms": statistics.median(r.app_cpu_ms for r in runs),
        "db_cpu_ms": statistics.median(r.db_cpu_ms for r in runs),
        "double_claims": sum(r.double_claims for r in runs),
        "audit_double": None
        if runs[0].audit_double is None
        else sum(r.audit_double or 0 for r in runs),
        "audit_missing": None
        if runs[0].audit_missing is None
        else sum(r.audit_missing or 0 for r in runs),
        "unattributed": sum(r.unattributed for r in runs),
        "prepared_workers": min(r.prepared_workers for r in runs),
        "errors": sum(r.errors for r in runs),
        "drained": sum(r.drained for r in runs),
        "machine_busy_cpus": statistics.median(r.machine_busy_cpus for r in runs),
        "others_cpus": statistics.median(r.others_cpus for r in runs),
        "others_cpus_runs": [round(r.others_cpus, 2) for r in runs],
    }


def print_medians(summary: dict[str, dict[str, Any]]) -> None:
    """Medians over the rounds, each mode against the ceiling of the same run."""
    ceiling = summary["ceiling"]["claims_per_s"]
    for mode, got in summary.items():
        print(
            f"     {mode:<15} {got['claims_per_s']:7.0f} claims/s {got['rates']!s:<16} "
            f"{got['claims_per_s'] / ceiling:5.2f}x ceiling  p50 {got['p50_ms']:7.1f} ms  "
            f"p99 {got['p99_ms']:7.1f} ms  cpu {got['app_cpu_ms'] + got['db_cpu_ms']:5.2f} ms/claim"
            f"  double {got['double_claims']}  unattributed {got['unattributed']}  others "
            f"{got['others_cpus_runs']} CPUs  {MODE_LABELS[mode]}",
            flush=True,
        )


def run_scenario(
    scenario: str, total: int, args: argparse.Namespace, admin: Any, data: Data, pool: Pool
) -> dict[str, Any]:
    """Load, explain, and run the modes of one scenario; its part of the report."""
    user_id = one(
        admin, "SELECT user_id FROM accounts_membership WHERE id = %s", (data.member_ids[0],)
    )

    def timed(label: str, mode: str, seconds: float) -> Run:
        reset_orders(admin, data)
        run_id = f"{label}-{mode}-{uuid.uuid4().hex[:12]}"
        run = summarize(label, mode, pool.run(mode, seconds, run_id), admin, run_id)
        print_run(run)
        return run

    secs = load_orders(admin, data, total, DUE)
    print(f"\nscenario {scenario}: {total:,} orders, {DUE:,} due (loaded in {secs:.1f} s)")
    out: dict[str, Any] = {"total": total, "due": DUE}
    reset_orders(admin, data)
    explain_and_print(data, out)
    print_plan("EXPLAIN (ANALYZE, BUFFERS) of the ceiling", explain_ceiling(admin, data, user_id))
    modes = ["product", "ceiling"]
    if not args.no_controls:
        modes[1:1] = ["product_prepared", "product_no_triggers"]
    runs: dict[str, list[Run]] = {mode: [] for mode in modes}
    for mode in interleaved(list(runs), args.rounds):
        runs[mode].append(timed(scenario, mode, args.duration))
    if not args.no_status_run:
        runs["product_status"] = [timed(scenario, "product_status", args.duration)]
    summary = {mode: median_run(rs) for mode, rs in runs.items()}
    ceiling = summary["ceiling"]["claims_per_s"]
    ratio = summary["product"]["claims_per_s"] / ceiling
    ratios = {mode: got["claims_per_s"] / ceiling for mode, got in summary.items()}
    doubles = sum(s["double_claims"] + (s["audit_double"] or 0) for s in summary.values())
    print(
        f"  => scenario {scenario}: product {summary['product']['claims_per_s']:.0f}"
        f" / ceiling {summary['ceiling']['claims_per_s']:.0f} claims/s = {ratio:.2f} "
        f"(target >= {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'NOT met'});"
        f" double claims {doubles}",
        flush=True,
    )
    print_medians(summary)
    out.update(
        summary=summary,
        ratio=ratio,
        ratios=ratios,
        target_met=ratio >= TARGET_RATIO,
        doubles=doubles,
    )
    if scenario == "b" and args.noindex_duration > 0:
        out["noindex"] = run_without_index(admin, data, args.noindex_duration, timed)
    return out


def run_without_index(
    admin: Any, data: Data, seconds: float, timed: Callable[[str, str, float], Run]
) -> dict[str, Any]:
    """Product and ceiling once each with order_queue_idx dropped; recreated afterwards."""
    indexdef = one(admin, "SELECT pg_get_indexdef('order_queue_idx'::regclass)")
    admin.execute("DROP INDEX order_queue_idx")
    out: dict[str, Any] = {}
    try:
        admin.execute("ANALYZE orders_order")
        print(f"\n  without order_queue_idx ({seconds:g} s runs):")
        reset_orders(admin, data)
        explain_and_print(data, out)
        out["summary"] = {
            mode: median_run([timed("b-noindex", mode, seconds)]) for mode in ("product", "ceiling")
        }
    finally:
        admin.execute(indexdef)
        admin.execute("ANALYZE orders_order")
        print(f"  recreated: {indexdef}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (ABBA)")
    parser.add_argument("--operators", type=int, default=50, help="operator processes")
    parser.add_argument("--total-b", type=int, default=1_000_000, help="orders in scenario b")
    parser.add_argument("--noindex-duration", type=float, default=8, help="0: skip that run")
    parser.add_argument("--scenarios", default="a,b")
    parser.add_argument("--no-status-run", action="store_true", help="skip product_status")
    parser.add_argument(
        "--no-controls",
        action="store_true",
        help="skip product_prepared and product_no_triggers",
    )
    parser.add_argument("--db-name", default="callvault_queuebench")
    parser.add_argument("--json", type=Path, help="write all figures here as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        raise SystemExit("--duration must be 1..120 s and --rounds 1..10")
    if not 1 <= args.operators <= 80:
        raise SystemExit("--operators must be 1..80 (PostgreSQL allows 100 connections)")
    totals = {"a": DUE, "b": args.total_b}
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - set(totals):
        raise SystemExit("--scenarios takes a, b or a,b")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    signal.signal(signal.SIGTERM, on_term)
    t_begin = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-queue-"))
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    pool: Pool | None = None
    try:
        with postgres_database(args.db_name) as db_url:
            env = bench_env(work, db_url)
            run_checked([str(bin_path("callvault")), "vault", "init"], env)
            run_checked([str(bin_path("callvault")), "migrate"], env, timeout=600)
            os.environ.update(env)  # this process and the spawned workers
            import django

            django.setup()
            dsn = db_url.replace("postgres://", "postgresql://", 1)
            admin = admin_connection(dsn)
            report["postgresql"] = one(admin, "SHOW server_version")
            report["triggers"] = triggers(admin)
            data = setup_project(args.operators)
            print(
                f"PostgreSQL {report['postgresql']}, {os.cpu_count()} CPUs, {args.operators} "
                f"operator processes, {args.duration:g} s per run, {args.rounds} rounds",
                flush=True,
            )
            for table, names in report["triggers"].items():
                print(f"triggers on {table}: {', '.join(names) or 'none'}")
            t0 = time.monotonic()
            pool = Pool(data.member_ids, dsn)
            pool.start()
            print(f"workers up in {time.monotonic() - t0:.1f} s", flush=True)
            for scenario in scenarios:
                report[scenario] = run_scenario(scenario, totals[scenario], args, admin, data, pool)
            admin.close()
    finally:
        if pool is not None:
            pool.close()
        shutil.rmtree(work, ignore_errors=True)
    report["wall_s"] = round(time.monotonic() - t_begin, 1)
    print(f"\nwall time {report['wall_s']} s; database {args.db_name} dropped")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print(
        "RESULT_JSON " + json.dumps({k: v for k, v in report.items() if k != "args"}, default=str)
    )
    missed = any(not report[s]["target_met"] for s in scenarios)
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
