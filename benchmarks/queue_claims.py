"""Queue claims on PostgreSQL: 50 operators claiming side by side, against the ceiling.

    .venv/bin/python benchmarks/queue_claims.py [--duration 20] [--rounds 2]
        [--extra-modes proto_fold_prep] [--profile] [--json FILE] [--strict]

50 OS processes (multiprocessing, 'spawn'), one per operator member; each sets up Django
itself (CALLVAULT_DEBUG=1, a temp CALLVAULT_DATA_DIR, a key ring file made once with
`callvault vault init`, the database `callvault_queuebench` on 127.0.0.1:5432, created for the
run and dropped afterwards, also on failure). Project, statuses, calling hours 00:00-23:59:59
and the operators are made with the product's actions; the orders are bulk-loaded with SQL.
The same processes run, on the same data reset (and vacuumed) before every run, in
interleaved rounds (ABBA):

- product: `claim_next(member)` (timed alone: the claim latency), then the order is marked
  done with `Order.objects.filter(pk=...).update(in_queue=False)`;
- ceiling: plain psycopg (autocommit), the bare one-statement claim
  `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id` (timed alone),
  then `UPDATE orders_order SET in_queue = false WHERE id = %s`;
- --extra-modes: prototypes of a cheaper claim (below) in the same rounds;
- product + status (one run, for the record): `claim_next` then the product's
  `do_change_status` to "accepted", the operator's real turn.

Scenarios: (a) 100,000 due orders; (b) 1,000,000 orders, 90% processed, 100,000 due. Each run
reports claims/s (claims started before the deadline / time until the last one ended), p50/p99
of the claim latency measured in the workers, CPU per claim of the workers and of their
PostgreSQL backends (from /proc), the CPUs the rest of the machine used meanwhile, and double
claims (ids claimed twice in a run, from the workers' lists; where the claim writes the audit
event also `order.claim` events per order > 1): must be 0. Target: product claims/s >= 50% of
the ceiling's, in both scenarios. Scenario (b) is also run briefly with `order_queue_idx`
dropped (then recreated) to show what the partial index buys. `EXPLAIN (ANALYZE, BUFFERS)` of
the statement `claim_next` sends (captured, then rolled back) and of the ceiling is printed.

`--profile` (scenario b) takes the claim apart with prototypes that live only in this file
(PROTO_MODES: no re-read of the order, work settings cached or read inside the statement,
the customer's local time computed in SQL instead of a ~600-zone list, a prepared statement
on Django's own connection) and controls (the ceiling without prepared statements, the
product with Django's debug cursor). Django's debug cursor (query logging, on with
CALLVAULT_DEBUG=1) is switched off in the workers, as in production, except in product_debug.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
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
BARE_DONE = "UPDATE orders_order SET in_queue = false WHERE id = %s"

# A copy of the statement in callvault.orders.queue._claim_postgresql, for the --profile
# prototypes only (sent through plain psycopg, with parts removed). {zones} and {audit} are
# replaced per variant.
PRODUCT_PICK = """
    WITH picked AS (
        SELECT id FROM orders_order
        WHERE project_id = %(project)s AND in_queue AND next_call_at <= %(now)s
          AND (locked_until IS NULL OR locked_until < %(now)s)
          AND (assigned_to_id IS NULL OR assigned_to_id = %(user)s)
          {zones}
        ORDER BY queue_rank, next_call_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE orders_order o SET locked_by_id = %(user)s, locked_until = %(until)s
        FROM picked WHERE o.id = picked.id
        RETURNING o.id, o.number
    )
"""
PRODUCT_AUDIT = """
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id,
        actor_name, action, object_type, object_id, object_repr, changes, extra, ip,
        user_agent, request_id)
    SELECT %(now)s, %(project)s, %(kind)s, %(actor_id)s, %(actor_name)s, 'order.claim',
        'order', claimed.id::text, '#' || claimed.number, %(changes)s::jsonb,
        %(extra)s::jsonb, %(ip)s, %(ua)s, %(request_id)s
    FROM claimed
    RETURNING object_id
"""

MODE_LABELS = {
    "product": "claim_next_id (what Next order calls) + ORM update(in_queue=False)",
    "ceiling": "bare UPDATE ... SKIP LOCKED (psycopg, autocommit) + bare UPDATE",
    "product_status": "claim_next + do_change_status(accepted)",
    # --profile: prototypes and controls (not product code)
    "product_baredone": "claim_next + the ceiling's bare done UPDATE (via Django)",
    "proto_noreread": "claim_next without re-reading the order (returns the id)",
    "proto_1q": "  + work settings cached: one statement (600-zone list)",
    "proto_1q_nozones": "  same without any zone condition (upper bound)",
    "proto_1q_sqltz": "  same with the local time computed in SQL",
    "proto_1q_sqltz_prep": "  + prepared statement (server-side binding)",
    "proto_fold_prep": "one prepared statement, settings + local time in SQL",
    "proto_fold_prep_baredone": "  same + bare done UPDATE",
    "proto_fold_prep_noaudit": "  same without the audit INSERT (not a proposal)",
    "ceiling_noprepare": "ceiling without psycopg's prepared statements",
    "product_debug": "product with Django's debug cursor (DEBUG=True) on",
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


def _product_sql(zones: str, audit: bool) -> str:
    """The product's statement with the zone condition replaced (for the prototypes)."""
    pick = PRODUCT_PICK.format(zones=zones)
    if audit:
        return pick + PRODUCT_AUDIT
    return pick + "SELECT id FROM claimed"  # noqa: S608 (constants of this file)


# Prototype: the customer's local time computed by PostgreSQL for the few rows the index walk
# visits, instead of a parameter listing every zone that is inside calling hours (~600).
LOCAL_TIME = "(%(now)s AT TIME ZONE COALESCE(NULLIF(customer_tz, ''), %(ptz)s))::time"
ZONES_LIST = "AND customer_tz = ANY(%(zones)s)"
ZONES_SQL = f"""AND CASE WHEN %(start)s::time <= %(end)s::time
              THEN {LOCAL_TIME} >= %(start)s::time AND {LOCAL_TIME} < %(end)s::time
              ELSE {LOCAL_TIME} >= %(start)s::time OR {LOCAL_TIME} < %(end)s::time END"""

# Prototype: the work settings read by the statement itself (no query before it, no cache),
# the local time computed in SQL, the lock's end written into the audit event by SQL.
FOLDED_CLAIM = f"""
    WITH ws AS (
        SELECT calling_hours_start AS hs, calling_hours_end AS he,
               %(now)s + make_interval(mins => lock_minutes) AS until
        FROM orders_worksettings WHERE project_id = %(project)s
    ), picked AS (
        SELECT id FROM orders_order
        WHERE project_id = %(project)s AND in_queue AND next_call_at <= %(now)s
          AND (locked_until IS NULL OR locked_until < %(now)s)
          AND (assigned_to_id IS NULL OR assigned_to_id = %(user)s)
          AND CASE WHEN (SELECT hs FROM ws) <= (SELECT he FROM ws)
              THEN {LOCAL_TIME} >= (SELECT hs FROM ws) AND {LOCAL_TIME} < (SELECT he FROM ws)
              ELSE {LOCAL_TIME} >= (SELECT hs FROM ws) OR {LOCAL_TIME} < (SELECT he FROM ws)
              END
        ORDER BY queue_rank, next_call_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE orders_order o SET locked_by_id = %(user)s, locked_until = (SELECT until FROM ws)
        FROM picked WHERE o.id = picked.id
        RETURNING o.id, o.number, o.locked_until
    )
"""  # noqa: S608 (constants of this file)
FOLDED_AUDIT = """
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id,
        actor_name, action, object_type, object_id, object_repr, changes, extra, ip,
        user_agent, request_id)
    SELECT %(now)s, %(project)s, %(kind)s, %(actor_id)s, %(actor_name)s, 'order.claim',
        'order', claimed.id::text, '#' || claimed.number, %(changes)s::jsonb,
        jsonb_build_object('until', claimed.locked_until), %(ip)s, %(ua)s, %(request_id)s
    FROM claimed
    RETURNING object_id
"""

PRODUCT_MODES = {"product", "product_debug", "product_status", "product_baredone"}
PROTO_MODES = {
    # mode: (statement, zones: list|sql|none|folded, prepared, audit, bare done)
    "proto_noreread": ("product", "list", False, True, False),
    "proto_1q": ("product", "list", False, True, False),
    "proto_1q_nozones": ("product", "none", False, True, False),
    "proto_1q_sqltz": ("product", "sql", False, True, False),
    "proto_1q_sqltz_prep": ("product", "sql", True, True, False),
    "proto_fold_prep": ("folded", "folded", True, True, False),
    "proto_fold_prep_baredone": ("folded", "folded", True, True, True),
    "proto_fold_prep_noaudit": ("folded", "folded", True, False, False),
}
PROFILE_MODES = [
    "product",
    "ceiling",
    "proto_noreread",
    "proto_1q",
    "proto_1q_nozones",
    "proto_1q_sqltz_prep",
    "proto_fold_prep",
    "proto_fold_prep_baredone",
    "proto_fold_prep_noaudit",
    "ceiling_noprepare",
    "product_debug",
]


def proto_sql(mode: str) -> str:
    """The statement a prototype mode sends."""
    statement, zones, _prepared, audit, _bare = PROTO_MODES[mode]
    if statement == "folded":
        return FOLDED_CLAIM + (FOLDED_AUDIT if audit else "SELECT id FROM claimed")  # noqa: S608
    zone_sql = {"list": ZONES_LIST, "sql": ZONES_SQL, "none": ""}[zones]
    return _product_sql(zone_sql, audit)


def proto_params(mode: str, member: Any, work: Any, now: datetime) -> dict[str, Any]:
    """The parameters of a prototype's statement, built as the product builds its own."""
    from callvault.audit.context import current
    from callvault.orders.queue import callable_zones

    ctx = current()
    until = now + timedelta(minutes=work.lock_minutes)
    params: dict[str, Any] = {
        "project": member.project_id,
        "now": now,
        "until": until,
        "user": member.user_id,
        "kind": ctx.actor.kind,
        "actor_id": ctx.actor.id[:64],
        "actor_name": ctx.actor.name[:200],
        "changes": json.dumps({"locked_by": [None, member.user.username]}),
        "extra": json.dumps({"until": until.isoformat()}),
        "ip": ctx.ip,
        "ua": ctx.user_agent[:400],
        "request_id": ctx.request_id,
    }
    zones = PROTO_MODES[mode][1]
    if zones == "list":
        params["zones"] = callable_zones(work, member.project.time_zone, now)
    elif zones in {"sql", "folded"}:
        params["ptz"] = member.project.time_zone
        params["start"], params["end"] = work.calling_hours_start, work.calling_hours_end
    if PROTO_MODES[mode][0] == "folded":
        for unused in ("until", "extra", "start", "end"):
            params.pop(unused, None)
    return params


def _build_mode(
    mode: str, member: Any, accepted: Any, dsn: str
) -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[], int], Callable[[], None]]:
    """(claim, done, backend_pid, close) for one mode; claim returns None when nothing is due.
    Each process holds one database connection at a time, opened here, before the start."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from callvault.orders.actions import do_change_status
    from callvault.orders.models import Order
    from callvault.orders.queue import claim_next, claim_next_id, work_settings

    settings.DEBUG = mode == "product_debug"  # the debug cursor logs every query when on
    connection.close()

    def django_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    def django_close() -> None:
        connection.close()

    def done_orm(order: Any) -> None:
        Order.objects.filter(pk=getattr(order, "pk", order)).update(in_queue=False)

    def done_bare_django(order: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(BARE_DONE, [getattr(order, "pk", order)])

    def done_status(order: Any) -> None:
        do_change_status(order, accepted)

    if mode in PRODUCT_MODES:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '60s'")
        done = {"product_status": done_status, "product_baredone": done_bare_django}.get(
            mode, done_orm
        )
        # "Next order" claims by id (claim_next_id); the status run needs the order itself.
        claim = claim_next if mode == "product_status" else claim_next_id
        return (lambda: claim(member)), done, django_pid, django_close

    if mode in PROTO_MODES:
        import psycopg

        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '60s'")
        _statement, _zones, prepared, _audit, bare = PROTO_MODES[mode]
        sql = proto_sql(mode)
        cached_work = work_settings(member.project_id)

        def claim_proto() -> int | None:
            # proto_noreread reads the settings each time as the product does; the others
            # use them cached (proto_1q*) or read them inside the statement (proto_fold*).
            work = work_settings(member.project_id) if mode == "proto_noreread" else cached_work
            params = proto_params(mode, member, work, timezone.now())
            if prepared:
                # A server-side binding cursor on Django's own connection (same transaction
                # handling), prepared by psycopg after a few executions.
                connection.ensure_connection()
                raw = connection.connection
                if raw.prepare_threshold is None:
                    raw.prepare_threshold = 5
                with psycopg.Cursor(raw) as cursor:
                    row = cursor.execute(sql, params).fetchone()
            else:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    row = cursor.fetchone()
            return int(row[0]) if row else None

        return claim_proto, (done_bare_django if bare else done_orm), django_pid, django_close

    # The ceiling: plain psycopg in autocommit (prepared statements after 5 runs, psycopg's
    # default, unless ceiling_noprepare).
    import psycopg

    prepare = None if mode == "ceiling_noprepare" else 5
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, prepare_threshold=prepare)
    conn.execute("SET statement_timeout = '60s'")

    def claim_bare() -> int | None:
        row = conn.execute(CEILING_CLAIM, (member.user_id, member.project_id)).fetchone()
        return int(row[0]) if row else None

    def done_bare(order_id: int) -> None:
        conn.execute(BARE_DONE, (order_id,))

    return claim_bare, done_bare, (lambda: int(conn.info.backend_pid)), conn.close


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
            claim, done, backend_pid, close = _build_mode(mode, member, accepted, dsn)
            pid = backend_pid()
            res_q.put(("ready", idx, None))
            go = cmd_q.get()
            if go[0] != "go":
                close()
                break
            ctx = AuditContext(actor=actor, request_id=run_id)
            with use_context(ctx):
                result = _run_loop(claim, done, pid, go[1], go[2])
            close()
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
    if mode in PRODUCT_MODES or (mode in PROTO_MODES and PROTO_MODES[mode][3]):
        row = admin.execute(
            "SELECT count(*), count(DISTINCT object_id) FROM audit_auditevent "
            "WHERE action = 'order.claim' AND request_id = %s",
            (run_id,),
        ).fetchone()
        audit_double = int(row[0]) - int(row[1])
        audit_missing = len(ids) - int(row[0])
    n = max(len(ids), 1)
    return Run(
        scenario=scenario,
        mode=mode,
        seconds=seconds,
        claims=len(ids),
        double_claims=len(ids) - len(set(ids)),
        audit_double=audit_double,
        audit_missing=audit_missing,
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
    print(
        f"  {run.mode:<24} {run.rate:8.0f} claims/s  p50 {run.claim_p50_ms:6.2f} ms"
        f"  p99 {run.claim_p99_ms:7.2f} ms  done p50 {run.done_p50_ms:5.2f} ms"
        f"  cpu/claim app {run.app_cpu_ms:.2f} + db {run.db_cpu_ms:.2f} ms"
        f"  claims {run.claims} in {run.seconds:.1f}s  double {run.double_claims}{audit}"
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


def setup_project(operators: int) -> Data:
    """Project, statuses, calling hours around the clock and the operators, the product's way."""
    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.accounts.models import Role
    from callvault.orders.actions import do_create_default_statuses
    from callvault.orders.models import WorkSettings

    project = do_create_project("Queue bench", PROJECT_SLUG, default_region="US")
    statuses = {s.code: s for s in do_create_default_statuses(project)}
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=dtime(0, 0), calling_hours_end=dtime(23, 59, 59)
    )
    member_ids = []
    for i in range(operators):
        user = do_create_user(f"op{i:02d}", PASSWORD, validate=False)
        member_ids.append(do_add_member(project, user, Role.OPERATOR).pk)
    return Data(project.pk, statuses["new"].pk, statuses["accepted"].pk, member_ids)


def load_orders(admin: Any, data: Data, total: int, due: int) -> float:
    """Replace the orders with `total` rows, the last `due` of them due now (SQL bulk load)."""
    t0 = time.monotonic()
    admin.execute("TRUNCATE orders_order CASCADE")
    admin.execute("DELETE FROM audit_auditevent WHERE action LIKE 'order.%'")
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
    """Put every due order back in the queue as loaded; drop the runs' claims and changes."""
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
    admin.execute("DELETE FROM audit_auditevent WHERE action LIKE 'order.%'")
    admin.execute("DELETE FROM orders_statuschange")
    admin.execute("VACUUM (ANALYZE) orders_order, audit_auditevent, orders_statuschange")
    due = admin.execute(
        "SELECT count(*) FROM orders_order WHERE project_id = %s AND in_queue "
        "AND locked_by_id IS NULL",
        (data.project_id,),
    ).fetchone()[0]
    if due != DUE:
        raise RuntimeError(f"reset left {due} due orders, expected {DUE}")


def explain_product(member_id: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement claim_next sends, rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from callvault.accounts.models import Membership
    from callvault.orders.queue import claim_next

    member = Membership.objects.select_related("project", "user").get(pk=member_id)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            claim_next(member)
        sql = next(q["sql"] for q in captured.captured_queries if "SKIP LOCKED" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return plan


def explain_proto(admin: Any, data: Data, mode: str) -> dict[str, list[str]]:
    """EXPLAIN of a prototype's statement, rolled back: with the values (a custom plan) and
    as the generic plan a prepared statement may switch to after five runs."""
    import psycopg
    from django.utils import timezone

    from callvault.accounts.models import Membership
    from callvault.orders.queue import work_settings

    member = Membership.objects.select_related("project", "user").get(pk=data.member_ids[0])
    params = proto_params(mode, member, work_settings(member.project_id), timezone.now())
    plans = {}
    with admin.transaction(force_rollback=True), psycopg.ClientCursor(admin) as cursor:
        rows = cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + proto_sql(mode), params).fetchall()
        plans["custom"] = [r[0] for r in rows]
    # The values are sent inline (a utility statement cannot type unknown parameters).
    with admin.transaction(force_rollback=True), psycopg.ClientCursor(admin) as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        types = ", ".join(_pg_type(name, value) for name, value in params.items())
        cursor.execute(f"PREPARE bench_claim ({types}) AS " + _numbered(proto_sql(mode), params))
        rows = cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_claim("
            + ", ".join(f"%s::{_pg_type(name, value)}" for name, value in params.items())
            + ")",
            list(params.values()),
        ).fetchall()
        plans["generic"] = [r[0] for r in rows]
        cursor.execute("DEALLOCATE bench_claim")
    return plans


def _pg_type(name: str, value: Any) -> str:
    """The declared type of a PREPARE parameter."""
    if name == "ip":
        return "inet"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, datetime):
        return "timestamptz"
    if isinstance(value, dtime):
        return "time"
    if isinstance(value, list):
        return "text[]"
    return "text"


def _numbered(sql: str, params: dict[str, Any]) -> str:
    """%(name)s placeholders as $1, $2... in the order of `params` (for PREPARE)."""
    for i, name in enumerate(params, start=1):
        sql = sql.replace(f"%({name})s", f"${i}")
    return sql


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
        "done_p50_ms": statistics.median(r.done_p50_ms for r in runs),
        "app_cpu_ms": statistics.median(r.app_cpu_ms for r in runs),
        "db_cpu_ms": statistics.median(r.db_cpu_ms for r in runs),
        "double_claims": sum(r.double_claims for r in runs),
        "audit_double": None
        if runs[0].audit_double is None
        else sum(r.audit_double or 0 for r in runs),
        "errors": sum(r.errors for r in runs),
        "drained": sum(r.drained for r in runs),
        "machine_busy_cpus": statistics.median(r.machine_busy_cpus for r in runs),
        "others_cpus": statistics.median(r.others_cpus for r in runs),
    }


def print_medians(summary: dict[str, dict[str, Any]]) -> None:
    """Medians over the rounds, each mode against the ceiling of the same run."""
    ceiling = summary["ceiling"]["claims_per_s"]
    for mode, got in summary.items():
        print(
            f"     {mode:<26} {got['claims_per_s']:7.0f} claims/s {got['rates']!s:<16} "
            f"{got['claims_per_s'] / ceiling:5.2f}x ceiling  p50 {got['p50_ms']:7.1f} ms  "
            f"p99 {got['p99_ms']:7.1f} ms  cpu {got['app_cpu_ms'] + got['db_cpu_ms']:5.2f} ms/claim"
            f"  double {got['double_claims']}  others {got['others_cpus']:.2f} CPUs  "
            f"{MODE_LABELS[mode]}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (ABBA)")
    parser.add_argument("--operators", type=int, default=50, help="operator processes")
    parser.add_argument("--total-b", type=int, default=1_000_000, help="orders in scenario b")
    parser.add_argument("--noindex-duration", type=float, default=8)
    parser.add_argument("--scenarios", default="a,b")
    parser.add_argument("--no-status-run", action="store_true", help="skip product_status")
    parser.add_argument("--profile", action="store_true", help="prototype variants (b)")
    parser.add_argument("--profile-duration", type=float, default=12)
    parser.add_argument("--profile-rounds", type=int, default=2)
    parser.add_argument(
        "--extra-modes",
        default="",
        help="prototype modes to interleave with product and ceiling, e.g. proto_fold_prep",
    )
    parser.add_argument("--db-name", default="callvault_queuebench")
    parser.add_argument("--json", type=Path, help="write all figures here as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        raise SystemExit("--duration must be 1..120 s and --rounds 1..10")
    if not 1 <= args.operators <= 80:
        raise SystemExit("--operators must be 1..80 (PostgreSQL allows 100 connections)")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    signal.signal(signal.SIGTERM, on_term)
    extra_modes = [m.strip() for m in args.extra_modes.split(",") if m.strip()]
    unknown = [m for m in extra_modes if m not in PROTO_MODES]
    if unknown:
        raise SystemExit(f"unknown --extra-modes {unknown}; known: {sorted(PROTO_MODES)}")
    t_begin = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-queue-"))
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    missed = False
    pool: Pool | None = None
    try:
        with postgres_database(args.db_name) as db_url:
            env = bench_env(work, db_url)
            run_checked([str(bin_path("callvault")), "vault", "init"], env)
            run_checked([str(bin_path("callvault")), "migrate"], env, timeout=600)
            os.environ.update(env)  # this process and the spawned workers
            import django

            django.setup()
            import psycopg

            admin = psycopg.connect(
                db_url.replace("postgres://", "postgresql://", 1),
                autocommit=True,
                connect_timeout=10,
            )
            version = one(admin, "SHOW server_version")
            data = setup_project(args.operators)
            user_id = one(
                admin,
                "SELECT user_id FROM accounts_membership WHERE id = %s",
                (data.member_ids[0],),
            )
            print(
                f"PostgreSQL {version}, {os.cpu_count()} CPUs, {args.operators} operator "
                f"processes, {args.duration:g} s per run, {args.rounds} rounds",
                flush=True,
            )
            t0 = time.monotonic()
            pool = Pool(data.member_ids, db_url.replace("postgres://", "postgresql://", 1))
            pool.start()
            print(f"workers up in {time.monotonic() - t0:.1f} s", flush=True)

            def timed(scenario: str, mode: str, seconds: float) -> Run:
                assert pool is not None
                reset_orders(admin, data)
                run_id = f"{scenario}-{mode}-{uuid.uuid4().hex[:12]}"
                results = pool.run(mode, seconds, run_id)
                run = summarize(scenario, mode, results, admin, run_id)
                print_run(run)
                return run

            totals = {"a": DUE, "b": args.total_b}
            for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
                total = totals[scenario]
                secs = load_orders(admin, data, total, DUE)
                print(
                    f"\nscenario {scenario}: {total:,} orders, {DUE:,} due "
                    f"(loaded in {secs:.1f} s)",
                    flush=True,
                )
                reset_orders(admin, data)
                plan = explain_product(data.member_ids[0])
                uses_index = any("order_queue_idx" in line for line in plan)
                print_plan("EXPLAIN (ANALYZE, BUFFERS) of claim_next's statement", plan)
                print_plan(
                    "EXPLAIN (ANALYZE, BUFFERS) of the ceiling",
                    explain_ceiling(admin, data, user_id),
                    14,
                )
                main_modes = ["product", "ceiling", *extra_modes]
                runs: dict[str, list[Run]] = {mode: [] for mode in main_modes}
                for mode in interleaved(main_modes, args.rounds):
                    runs[mode].append(timed(scenario, mode, args.duration))
                if not args.no_status_run:
                    runs["product_status"] = [timed(scenario, "product_status", args.duration)]
                summary = {mode: median_run(rs) for mode, rs in runs.items()}
                ratio = summary["product"]["claims_per_s"] / summary["ceiling"]["claims_per_s"]
                met = ratio >= TARGET_RATIO
                missed = missed or not met
                doubles = sum(
                    s["double_claims"] + (s["audit_double"] or 0) for s in summary.values()
                )
                print(
                    f"  => scenario {scenario}: product {summary['product']['claims_per_s']:.0f}"
                    f" / ceiling {summary['ceiling']['claims_per_s']:.0f} claims/s = "
                    f"{ratio:.2f} (target >= {TARGET_RATIO:.2f}: "
                    f"{'met' if met else 'NOT met'}); double claims {doubles}",
                    flush=True,
                )
                print_medians(summary)
                report[scenario] = {
                    "total": total,
                    "due": DUE,
                    "plan": plan,
                    "plan_uses_order_queue_idx": uses_index,
                    "summary": summary,
                    "ratio": ratio,
                    "target_met": met,
                }
                if scenario == "b" and args.profile:
                    print("\n  profile (scenario b, prototypes live only in this file):")
                    reset_orders(admin, data)
                    proto_plans = explain_proto(admin, data, "proto_fold_prep")
                    for kind, proto_plan in proto_plans.items():
                        print_plan(f"EXPLAIN (ANALYZE) of proto_fold_prep, {kind} plan", proto_plan)
                    report["profile_b_plans"] = proto_plans
                    prof_runs: dict[str, list[Run]] = {mode: [] for mode in PROFILE_MODES}
                    for mode in interleaved(PROFILE_MODES, args.profile_rounds):
                        prof_runs[mode].append(timed(scenario, mode, args.profile_duration))
                    prof = {mode: median_run(rs) for mode, rs in prof_runs.items()}
                    print("  profile medians:")
                    print_medians(prof)
                    report["profile_b"] = prof
                if scenario == "b" and args.noindex_duration > 0:
                    indexdef = one(admin, "SELECT pg_get_indexdef('order_queue_idx'::regclass)")
                    admin.execute("DROP INDEX order_queue_idx")
                    try:
                        admin.execute("ANALYZE orders_order")
                        print(f"\n  without order_queue_idx ({args.noindex_duration:g} s runs):")
                        plan = explain_product(data.member_ids[0])
                        print_plan("EXPLAIN (ANALYZE, BUFFERS) of claim_next's statement", plan)
                        noidx = {}
                        for mode in ["product", "ceiling"]:
                            noidx[mode] = median_run(
                                [timed("b-noindex", mode, args.noindex_duration)]
                            )
                        report["b_noindex"] = {"summary": noidx, "plan": plan}
                    finally:
                        admin.execute(indexdef)
                        admin.execute("ANALYZE orders_order")
                        print(f"  recreated: {indexdef}", flush=True)
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
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
