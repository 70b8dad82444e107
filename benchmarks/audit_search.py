"""The audit viewers on millions of events: p50/p95 per filter, with the plan of each page.

    .venv/bin/python benchmarks/audit_search.py [--events 3000000] [--rounds 12]
        [--candidates] [--max-minutes 25]

A database `callvault_auditsearchbench` on 127.0.0.1 is created for the run, migrated with
`callvault migrate`, filled by SQL (`INSERT ... SELECT generate_series`) with N events over
180 days in three projects sharing the table (the measured one holds 60%): members'
actions with a realistic mix, API keys, the system, a few unattributed writes; each
operator works from two or three IPv4 addresses and some from IPv6. It is dropped at the
end, also on error or Ctrl-C.

Each scenario is requested through Django's test Client as a supervisor with the whole
middleware stack and template (the search page also records its audit.search event, as in
production): rounds interleaved across scenarios, p50/p95 of the page time, the time in
the database, queries per page and the access path of the main query on audit_auditevent
(EXPLAIN ANALYZE). With --candidates the same scenarios run again after creating the
indexes this script proposes (see CANDIDATE_INDEXES), to show what each one buys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database, run_checked  # noqa: E402

DB_NAME = "callvault_auditsearchbench"
SLUG = "bench"
OPERATORS = 20
DAYS = 180
STATEMENT_TIMEOUT_MS = 60_000

# (action, object type, share): what a call center's record is made of.
ACTIONS = [
    ("order.view", "order", 0.40),
    ("order.claim", "order", 0.14),
    ("order.status", "order", 0.14),
    ("order.update", "order", 0.08),
    ("order.no_answer", "order", 0.08),
    ("order.comment", "order", 0.06),
    ("order.item_add", "order", 0.04),
    ("audit.search", "", 0.02),
    ("order.search", "", 0.02),
    ("phone.reveal", "order", 0.01),
    ("auth.login", "user", 0.0098),
    ("member.role", "membership", 0.0001),
    ("audit.export", "", 0.0001),
]

CANDIDATE_INDEXES = {
    "audit_project_id_idx": "(project_id, id)",
    "audit_action_idx": "(project_id, action, id)",
    "audit_ip_idx": "(project_id, ip, id)",
    "audit_actor_time_idx": "(project_id, actor_kind, actor_id, created_at)",
}


def _case(shares: list[tuple[str, float]], var: str) -> str:
    """A CASE over cumulative shares of `var` (uniform in [0, 1)) naming SQL literals."""
    parts, total = [], 0.0
    for value, share in shares[:-1]:
        total += share
        parts.append(f"WHEN {var} < {total:.6f} THEN {value}")
    return f"CASE {' '.join(parts)} ELSE {shares[-1][0]} END"


@dataclass
class Bench:
    """What the scenarios need to know about the loaded project."""

    project_id: int
    supervisor: Any
    operator_ids: list[int]
    events: int


def seed(slug: str, operators: int) -> tuple[Any, Any, list[int]]:
    """A project with a supervisor (who may also export) and operators, through the actions."""
    import secrets

    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user

    project = do_create_project(f"Shop {slug}", slug)
    password = secrets.token_urlsafe(16)  # nobody logs in: the client uses force_login
    supervisor = do_create_user(f"{slug}-sam", password, validate=False)
    member = do_add_member(project, supervisor, "supervisor")
    member.can_export = True
    member.save(update_fields=["can_export"])
    ids = []
    for i in range(operators):
        user = do_create_user(f"{slug}-op{i:02d}", password, validate=False)
        do_add_member(project, user, "operator")
        ids.append(user.pk)
    return project, supervisor, ids


def insert_events(cur: Any, projects: list[int], operators: list[int], count: int) -> None:
    """`count` events over DAYS days, one statement; ids follow time as in production."""
    action = _case([(f"'{a}'", s) for a, _t, s in ACTIONS], "r_action")
    object_type = _case([(f"'{t}'", s) for _a, t, s in ACTIONS], "r_action")
    project = _case(
        [(str(projects[0]), 0.6), (str(projects[1]), 0.3), (str(projects[2]), 0.1)], "r_project"
    )
    kind = _case(
        [("'member'", 0.90), ("'api_key'", 0.05), ("'system'", 0.04995), ("'unattributed'", 5e-5)],
        "r_kind",
    )
    cur.execute(
        f"""
        INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, actor_name,
            action, object_type, object_id, object_repr, changes, extra, ip, user_agent,
            request_id)
        SELECT created_at, project_id, kind,
            CASE WHEN kind = 'member' THEN op::text ELSE '' END,
            CASE WHEN kind = 'member' THEN 'op' || op ELSE kind END,
            action, object_type,
            CASE WHEN object_type = 'order' THEN (1 + (g * 7919) %% 1000000)::text
                 WHEN object_type = '' THEN '' ELSE op::text END,
            '', '{{"status": ["new", "accepted"]}}'::jsonb, '{{}}'::jsonb,
            CASE WHEN kind <> 'member' THEN NULL
                 WHEN op %% 5 = 0
                     THEN ('2001:db8:' || to_hex(op) || '::' || to_hex(g %% 3 + 1))::inet
                 ELSE ('10.' || op %% 250 || '.' || (g %% 3) || '.' || (1 + op %% 200))::inet END,
            'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0', md5(g::text)
        FROM (
            SELECT g, r_action, r_kind,
                now() - interval '{DAYS} days' + g * (interval '{DAYS} days' / %(n)s)
                    AS created_at,
                {project} AS project_id, {kind} AS kind, {action} AS action,
                {object_type} AS object_type,
                (%(operators)s::bigint[])[1 + (g * 13) %% cardinality(%(operators)s)] AS op
            FROM (SELECT g, random() AS r_action, random() AS r_kind, random() AS r_project
                  FROM generate_series(1, %(n)s::bigint) AS g) s0
        ) s1
        """,  # noqa: S608 (built from this script's constants; values are parameters)
        {"n": count, "operators": operators},
    )


def load(events: int) -> Bench:
    """Three projects sharing the table, N events, indexes rebuilt after the load."""
    from django.db import connection

    main, supervisor, operator_ids = seed(SLUG, OPERATORS)
    others = [seed(f"n{i}", 3)[0] for i in range(2)]
    with connection.cursor() as cur:
        cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS * 20}")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = 'audit_auditevent'::regclass AND NOT x.indisprimary
            """
        )
        indexes = cur.fetchall()
        for name, _definition in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        # The record's own triggers (append-only, pending changes) are not what is measured.
        cur.execute("SET session_replication_role = replica")
        insert_events(cur, [main.pk, *(p.pk for p in others)], operator_ids, events)
        cur.execute("SET session_replication_role = DEFAULT")
        for _name, definition in indexes:
            cur.execute(definition)
        cur.execute("VACUUM ANALYZE audit_auditevent")
    return Bench(main.pk, supervisor, operator_ids, events)


# ---- measuring ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One scenario's timings."""

    times: list[float] = field(default_factory=list)
    db_times: list[float] = field(default_factory=list)
    queries: int = 0
    rows: int = 0
    plan: str = ""
    error: str = ""


def ms(values: list[float], q: float) -> float:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class QueryTimer:
    """A database execute wrapper: counts and times every statement of a request."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t0
            self.statements.append((sql, params))


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def explain(sql: str, params: Any) -> str:
    """The access path on audit_auditevent, rows read and the database's time."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        raw = cur.fetchone()[0]
    top = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    scans = [n for n in _nodes(top["Plan"]) if n.get("Relation Name") == "audit_auditevent"]
    if not scans:
        return f"{top['Execution Time']:.1f} ms"

    def read(n: dict[str, Any]) -> float:
        return float((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"])

    # The scan that reads most, not the id-bound probes (one row each).
    scan = max(scans, key=read)
    kind = scan["Node Type"].replace("Bitmap Heap Scan", "Bitmap Scan")
    if scan.get("Scan Direction") == "Backward":
        kind += " Backward"
    index = scan.get("Index Name") or " + ".join(
        n["Index Name"] for n in _nodes(scan) if n["Node Type"] == "Bitmap Index Scan"
    )
    sort = " + Sort" if any(n["Node Type"] == "Sort" for n in _nodes(top["Plan"])) else ""
    return f"{kind} {index}{sort}: {read(scan):,.0f} rows, {top['Execution Time']:.1f} ms"


@dataclass
class Scenario:
    """A page to request."""

    name: str
    url: str
    params: dict[str, str]
    sample: Sample = field(default_factory=Sample)


def _is_main_read(sql: str) -> bool:
    return 'FROM "audit_auditevent"' in sql and not sql.lstrip().upper().startswith("INSERT")


def request_once(client: Any, s: Scenario, keep: bool) -> None:
    """One request, timed with its statements; with keep=True also the plan."""
    from django.db import connection
    from django.db.utils import OperationalError

    timer = QueryTimer()
    try:
        with connection.execute_wrapper(timer):
            t0 = time.perf_counter()
            response = client.get(s.url, s.params)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            elapsed = time.perf_counter() - t0
        assert response.status_code == 200, (s.name, response.status_code)
    except OperationalError as exc:  # statement_timeout
        s.sample.error = str(exc).splitlines()[0]
        return
    s.sample.times.append(elapsed)
    s.sample.db_times.append(timer.seconds)
    s.sample.queries = len(timer.statements)
    if keep:
        reads = [(q, p) for q, p in timer.statements if _is_main_read(q)]
        s.sample.plan = "; ".join(explain(q, p) for q, p in reads[-2:])


def scenarios(bench: Bench) -> list[Scenario]:
    """Every filter of the search page, a deep page, the timeline and an order's history."""
    from django.db import connection
    from django.utils import timezone

    with connection.cursor() as cur:
        cur.execute(
            "SELECT id FROM audit_auditevent WHERE project_id = %s ORDER BY id DESC "
            "OFFSET %s LIMIT 1",
            [bench.project_id, int(bench.events * 0.6) // 2],
        )
        deep = str(cur.fetchone()[0])
        cur.execute(
            "SELECT object_id FROM audit_auditevent WHERE project_id = %s AND object_type = "
            "'order' ORDER BY id DESC LIMIT 1",
            [bench.project_id],
        )
        order_id = cur.fetchone()[0]
    op = next(o for o in bench.operator_ids[3:] if o % 5)  # works over IPv4
    op6 = next(o for o in bench.operator_ids if o % 5 == 0)
    today = timezone.localdate()
    week = {
        "date_from": str(today - timedelta(days=37)),
        "date_to": str(today - timedelta(days=31)),
    }
    search = f"/p/{SLUG}/audit/"
    filters: list[tuple[str, dict[str, str]]] = [
        ("first page, no filter", {}),
        (f"deep page (row {int(bench.events * 0.3):,} of the project)", {"before": deep}),
        ("member = one of 20", {"member": str(op)}),
        ("action = order.status (14%)", {"action": "order.status"}),
        ("action = audit.export (rare)", {"action": "audit.export"}),
        ("action prefix phone. (1%)", {"action": "phone."}),
        ("object = one order", {"object_type": "order", "object_id": order_id}),
        ("object type = membership (rare)", {"object_type": "membership"}),
        ("actor kind = unattributed (rare)", {"actor_kind": "unattributed"}),
        ("ip = one address", {"ip": f"10.{op % 250}.1.{1 + op % 200}"}),
        ("ip in a /24", {"ip": f"10.{op % 250}.1.0/24"}),
        ("ip in 10.0.0.0/8 (most)", {"ip": "10.0.0.0/8"}),
        ("ip in an IPv6 /48", {"ip": f"2001:db8:{op6:x}::/48"}),
        ("dates: a week a month ago", week),
        ("dates + member", {**week, "member": str(op)}),
        ("dates + action rare", {**week, "action": "member.role"}),
    ]
    out = [Scenario(name, search, params) for name, params in filters]
    day = str(today - timedelta(days=3))
    out.append(
        Scenario("timeline: one operator, one day", f"/p/{SLUG}/audit/timeline/{op}/", {"day": day})
    )
    # Another operator's same day, with one event from an address new to them: the case where
    # the "new IP" check cannot stop early. (The table is append-only; its triggers are
    # switched off for this one change of a throw-away database.)
    newcomer = next(o for o in bench.operator_ids[4:] if o % 5 and o != op)
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cur.execute(
            "UPDATE audit_auditevent SET ip = '203.0.113.77' WHERE id = (SELECT id FROM "
            "audit_auditevent WHERE project_id = %s AND actor_kind = 'member' AND actor_id = %s "
            "AND created_at >= %s::date + interval '9 hours' "  # 12:00-23:00 in Moscow
            "AND created_at < %s::date + interval '20 hours' ORDER BY id LIMIT 1)",
            [bench.project_id, str(newcomer), day, day],
        )
        assert cur.rowcount == 1
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")
    out.append(
        Scenario(
            "timeline: a day with a new address",
            f"/p/{SLUG}/audit/timeline/{newcomer}/",
            {"day": day},
        )
    )
    # No CSV export here: it now goes through the guarded exports (a reason, a fresh step-up,
    # a watermark; a large one is queued for the worker), and its GET only redirects there.
    return out


def run(bench: Bench, rounds: int, deadline: float) -> list[Scenario]:
    """A warm-up with plans, then interleaved rounds over every scenario."""
    from django.db import connection
    from django.test import Client

    with connection.cursor() as cur:
        cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    client = Client(HTTP_HOST="127.0.0.1", HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(bench.supervisor)
    todo = scenarios(bench)
    for s in todo:
        request_once(client, s, keep=True)
        if s.sample.times:
            del s.sample.times[0], s.sample.db_times[0]
    for _ in range(rounds):
        if time.monotonic() > deadline:
            print("  (deadline reached: fewer rounds)", flush=True)
            break
        for s in todo:
            if not s.sample.error:
                request_once(client, s, keep=False)
    return todo


def report(title: str, done: list[Scenario]) -> None:
    print(f"\n{title}\n\n| page | p50 / p95 ms | db p50 ms | queries | main query read by |")
    print("|---|---|---|---|---|")
    for s in done:
        p = s.sample
        if p.error or not p.times:
            print(f"| {s.name} | {p.error or '-'} | | | |")
            continue
        print(
            f"| {s.name} | {ms(p.times, 0.5):.0f} / {ms(p.times, 0.95):.0f} | "
            f"{ms(p.db_times, 0.5):.1f} | {p.queries} | {p.plan} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--candidates", action="store_true", help="also with CANDIDATE_INDEXES")
    parser.add_argument("--max-minutes", type=float, default=25)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_minutes * 60
    with postgres_database(DB_NAME) as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")},
            "CALLVAULT_DEBUG": "1",
            "CALLVAULT_DATA_DIR": f"/tmp/{DB_NAME}-data",
            "CALLVAULT_DATABASE_URL": url,
            "PYTHONPATH": str(REPO),
        }
        run_checked([str(REPO / ".venv" / "bin" / "callvault"), "migrate"], env, timeout=600)
        os.environ.update({k: env[k] for k in env if k.startswith("CALLVAULT_")})
        os.environ["DJANGO_SETTINGS_MODULE"] = "callvault.settings"
        import django

        django.setup()
        from django.db import connection, connections

        try:
            t0 = time.monotonic()
            bench = load(args.events)
            with connection.cursor() as cur:
                cur.execute("SELECT pg_size_pretty(pg_total_relation_size('audit_auditevent'))")
                size = cur.fetchone()[0]
                cur.execute("SHOW server_version")
                version = cur.fetchone()[0]
            print(
                f"loaded {args.events:,} events (60% in the measured project) in "
                f"{time.monotonic() - t0:.0f} s; audit_auditevent with indexes: {size}; "
                f"PostgreSQL {version}; {args.rounds} rounds",
                flush=True,
            )
            report("With the existing indexes", run(bench, args.rounds, deadline))
            if args.candidates:
                with connection.cursor() as cur:
                    cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS * 20}")
                    for name, columns in CANDIDATE_INDEXES.items():
                        cur.execute(f"CREATE INDEX {name} ON audit_auditevent {columns}")
                    cur.execute("ANALYZE audit_auditevent")
                report("With the candidate indexes", run(bench, args.rounds, deadline))
        finally:
            connections.close_all()
    print(f"\ndatabase {DB_NAME} dropped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
