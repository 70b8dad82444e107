"""The orders page on 1,000,000 orders: keyset pages against OFFSET + COUNT pages, same run.

    .venv/bin/python benchmarks/order_list.py [--orders 1000000] [--rounds 15] [--max-minutes 25]

A database `callvault_listbench` on 127.0.0.1:5432 (user postgres, trust auth) is created
for the run (createdb), migrated with `callvault migrate` (CALLVAULT_DEBUG=1, a temporary data
folder), filled with one project of N orders by SQL (`INSERT ... SELECT generate_series`:
90 days of orders, realistic spread of statuses, 20 operators, sources and duplicates, stored
masks like "+1 ***-***-**42" beside a dummy ciphertext, items on a few), and dropped at the
end, also on error or Ctrl-C.

The pages are requested in this process through Django's test Client, as a supervisor, with
the product's whole middleware stack and template (DEBUG=1 as for the migration: both sides
pay the same debug overhead). Two views render the same template with the same filters:

- product: `/p/<slug>/orders/`, keyset paging on (created_at, id) with a cursor, no COUNT;
- naive: Django's Paginator over the same filtered queryset: COUNT(*) and OFFSET.

For each scenario (first page, a deep page at row 500,000, each filter) the two are requested
in interleaved rounds; the script prints p50/p95 of the request time, queries per page, the
plan of the rows query, and the ratio naive/product. Every statement has a 60 s timeout and
the whole run a deadline; a page that times out is reported as such.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DB_NAME = "callvault_listbench"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
SLUG = "bench"
OPERATORS = 20
STATEMENT_TIMEOUT_MS = 60_000


def pg_tool(name: str, *args: str, timeout: float = 120) -> None:
    """createdb / dropdb against the local server, failing loudly."""
    subprocess.run([name, *PG, *args], check=True, timeout=timeout, capture_output=True)


@contextmanager
def bench_database() -> Iterator[Path]:
    """The database and data folder of the run, migrated; both removed afterwards."""
    pg_tool("dropdb", "--if-exists", "--force", DB_NAME)
    pg_tool("createdb", DB_NAME)
    data_dir = Path(tempfile.mkdtemp(prefix="callvault-listbench-"))
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")},
            "CALLVAULT_DEBUG": "1",
            "CALLVAULT_DATA_DIR": str(data_dir),
            "CALLVAULT_DATABASE_URL": DB_URL,
            "PYTHONPATH": str(REPO),  # this tree, whatever the virtualenv was installed from
        }
        callvault = REPO / ".venv" / "bin" / "callvault"
        subprocess.run(
            [str(callvault), "migrate"], env=env, check=True, timeout=300, capture_output=True
        )
        os.environ.update({k: env[k] for k in env if k.startswith("CALLVAULT_")})
        yield data_dir
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 (Django may not be set up yet: nothing to close)
            pass
        pg_tool("dropdb", "--if-exists", "--force", DB_NAME)
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- the data ---------------------------------------------------------------------------

# (status code, share of older orders, share of the last two days' orders): recent orders
# are still being processed, old ones are mostly settled.
STATUS_SPREAD = [
    ("new", 0.02, 0.40),
    ("callback", 0.02, 0.15),
    ("no_answer", 0.03, 0.20),
    ("accepted", 0.28, 0.15),
    ("cancelled", 0.18, 0.10),
    ("unreachable", 0.10, 0.0),
    ("spam", 0.04, 0.0),
    ("shipped", 0.10, 0.0),
    ("delivered", 0.20, 0.0),
    ("returned", 0.03, 0.0),
]
SOURCES = [
    ("landing-a", 0.35),
    ("landing-b", 0.25),
    ("partner-x", 0.15),
    ("partner-y", 0.10),
    ("api", 0.10),
    ("", 0.05),
]
NAMES = ["Ivan Petrov", "Anna Smirnova", "Olga Ivanova", "Pavel Sokolov", "Maria Popova"]


def _pick(shares: list[tuple[str, float]], var: str) -> str:
    """A CASE over cumulative shares of `var` (uniform in [0, 1)) naming SQL literals."""
    parts, total = [], 0.0
    for value, share in shares[:-1]:
        total += share
        parts.append(f"WHEN {var} < {total:.4f} THEN {value}")
    return f"CASE {' '.join(parts)} ELSE {shares[-1][0]} END"


@dataclass
class Bench:
    """What the scenarios need to know about the loaded project."""

    project_id: int
    supervisor: Any
    operator_ids: list[int]
    status_ids: dict[str, int]
    orders: int


def order_columns(in_queue: str, rank: str) -> dict[str, str]:
    """SQL for each column of orders_order, in terms of the row generator in `insert_orders`:
    g (1..N, the order's number), its id (g + %(first_id)s), created_at, status_id, src and
    uniform random r_op, r_dup."""
    return {
        "id": "g + %(first_id)s",
        "project_id": "%(project)s",
        "number": "g",
        "status_id": "status_id",
        "customer_name": f"(%(names)s::text[])[1 + g %% {len(NAMES)}]",
        "phone_sealed": "'cv1:bench:' || md5(g::text)",
        "phone_index": "md5(g::text) || md5((-g)::text)",
        "phone_mask": "'+1 ***-***-**' || lpad((g %% 100)::text, 2, '0')",
        "customer_tz": "'America/New_York'",
        "source": "src",
        "next_call_at": f"CASE WHEN {in_queue} THEN created_at + interval '1 hour' END",
        "attempts": f"CASE WHEN {in_queue} THEN g %% 4 ELSE 0 END",
        "assigned_to_id": (
            "CASE WHEN r_op >= 0.1 "
            "THEN (%(operators)s::bigint[])[1 + (g * 7) %% cardinality(%(operators)s)] END"
        ),
        "duplicate_of_id": (
            "CASE WHEN r_dup < 0.06 AND g > 100 THEN g - 1 - (g %% 50) + %(first_id)s END"
        ),
        "in_queue": in_queue,
        "queue_rank": f"COALESCE({rank}, 0)",
        "version": "1",
        "created_at": "created_at",
        "updated_at": "created_at",
    }


@dataclass
class Seeded:
    """A project made through the product's actions, before its orders are loaded."""

    project: Any
    statuses: dict[str, Any]
    operator_ids: list[int]
    supervisor: Any


def seed_project(slug: str, operators: int) -> Seeded:
    """A project with its default statuses, a product, a supervisor and operators."""
    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.orders.actions import do_create_default_statuses, do_create_product
    from callvault.orders.models import Status

    project = do_create_project(f"Shop {slug}", slug)
    do_create_default_statuses(project)
    do_create_product(project, sku="TEA", name="Tea", price="990.00")
    password = secrets.token_urlsafe(16)  # nobody logs in: the client uses force_login
    supervisor = do_create_user(f"{slug}-sam", password, validate=False)
    do_add_member(project, supervisor, "supervisor")
    operator_ids = []
    for i in range(operators):
        user = do_create_user(f"{slug}-op{i:02d}", password, validate=False)
        do_add_member(project, user, "operator")
        operator_ids.append(user.pk)
    statuses = {s.code: s for s in Status.objects.filter(project=project)}
    return Seeded(project, statuses, operator_ids, supervisor)


def insert_orders(cur: Any, seeded: Seeded, count: int, first_id: int) -> None:
    """`count` orders over the last 90 days, one statement."""
    from django.db import connection

    from callvault.orders.models import Order

    statuses = seeded.statuses
    old_status = _pick([(str(statuses[c].pk), a) for c, a, _ in STATUS_SPREAD], "r_status")
    new_status = _pick([(str(statuses[c].pk), b) for c, _, b in STATUS_SPREAD if b], "r_status")
    queued = {s.pk: s.queue_rank for s in statuses.values() if s.is_queued}
    in_queue = f"status_id IN ({','.join(map(str, queued))})"
    rank = "CASE " + " ".join(f"WHEN status_id = {k} THEN {v}" for k, v in queued.items())
    exprs = order_columns(in_queue, rank + " END")
    params: dict[str, Any] = {
        "project": seeded.project.pk,
        "first_id": first_id,
        "names": NAMES,
        "operators": seeded.operator_ids,
        "orders": count,
        "recent_from": count - count * 2 // 90,  # the last two of 90 days
    }
    # Columns this script does not know (added since it was written) get their model default.
    columns, values = [], []
    for f in Order._meta.concrete_fields:
        columns.append(f'"{f.column}"')
        if f.column in exprs:
            values.append(exprs[f.column])
        elif f.null:
            values.append("NULL")
        else:
            params[f.column] = f.get_db_prep_save(f.get_default(), connection)
            values.append(f"%({f.column})s")
    # Built from this script's constants and the projects' own ids; values are parameters.
    cur.execute(
        f"""
        INSERT INTO orders_order ({", ".join(columns)})
        SELECT {", ".join(values)}
        FROM (
            SELECT g, created_at, src, r_op, r_dup,
                   CASE WHEN g >= %(recent_from)s THEN {new_status}
                        ELSE {old_status} END AS status_id
            FROM (
                SELECT g,
                    now() - interval '90 days'
                        + (g - 1) * (interval '90 days' / %(orders)s)
                        + random() * interval '20 seconds' AS created_at,
                    {_pick([(f"'{s}'", share) for s, share in SOURCES], "r_source")} AS src,
                    random() AS r_status, random() AS r_op, random() AS r_dup
                FROM (SELECT g, random() AS r_source
                      FROM generate_series(1, %(orders)s) AS g) s0
            ) s1
        ) s2
        """,  # noqa: S608
        params,
    )
    cur.execute(
        "UPDATE accounts_project SET order_seq = %s WHERE id = %s", [count, seeded.project.pk]
    )


def load(orders: int, neighbour_orders: int) -> Bench:
    """The measured project with N orders, and a neighbour project sharing the table (as on
    a server with several shops), bulk-loaded by SQL."""
    from django.db import connection

    main = seed_project(SLUG, OPERATORS)
    neighbour = seed_project("neighbour", 5)
    with connection.cursor() as cur:
        cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS * 10}")
        cur.execute("SET maintenance_work_mem = '512MB'")
        # Secondary indexes are dropped for the load and rebuilt from their own definitions
        # (one sorted build each instead of a million random inserts into each tree); the
        # foreign keys are not checked row by row (the data is consistent by construction).
        cur.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = 'orders_order'::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
            """
        )
        indexes = cur.fetchall()
        for name, _definition in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("SET session_replication_role = replica")
        insert_orders(cur, main, orders, 0)
        insert_orders(cur, neighbour, neighbour_orders, orders)
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("SELECT setval('orders_order_id_seq', %s)", [orders + neighbour_orders])
        for _name, definition in indexes:
            cur.execute(definition)
        # Items for a few: the first 2,000 orders get a line of each product.
        cur.execute(
            """
            INSERT INTO orders_orderitem (order_id, project_id, product_id, quantity, price,
                                          is_upsell)
            SELECT o.id, o.project_id, p.id, 1 + o.id %% 2, p.price, false
            FROM orders_order o JOIN orders_product p ON p.project_id = o.project_id
            WHERE o.project_id = %s AND o.id <= 2000
            """,
            [main.project.pk],
        )
        cur.execute("VACUUM ANALYZE orders_order")
        cur.execute("VACUUM ANALYZE orders_orderitem")
    return Bench(
        main.project.pk,
        main.supervisor,
        main.operator_ids,
        {c: s.pk for c, s in main.statuses.items()},
        orders,
    )


# ---- the naive page ---------------------------------------------------------------------


def naive_order_list(request: Any, project_slug: str) -> Any:
    """The same page paged like Django's Paginator: COUNT(*) over the filtered base, OFFSET."""
    from django.core.paginator import Paginator
    from django.shortcuts import render

    from callvault.accounts.models import access_membership
    from callvault.orders.lists import PAGE_SIZE, filter_form
    from callvault.orders.models import Order

    member = access_membership(request.user, project_slug)  # 404 for anonymous visitors too
    project = member.project
    form = filter_form(request.GET, member)
    qs = form.apply(Order.objects.visible_to(member), project)
    ordered = qs.select_related("status", "assigned_to").order_by("-created_at", "-pk")
    page = Paginator(ordered, PAGE_SIZE).get_page(request.GET.get("page"))
    visible = project.mask_visible_digits
    return render(
        request,
        "orders/order_list.html",
        {
            "member": member,
            "project": project,
            "form": form,
            "rows": [(order, order.phone_masked(visible)) for order in page],
            "page_obj": page,
        },
    )


def bench_urls() -> ModuleType:
    """The URLconf of the run: the product's URLs plus the naive page (built after setup)."""
    from django.urls import include, path

    urls = ModuleType("benchmarks.order_list_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("bench/naive/<slug:project_slug>/", naive_order_list),
        path("", include("callvault.urls")),
    ]
    return urls


# ---- measuring --------------------------------------------------------------------------

ORDER_LINK = re.compile(rf'href="/p/{SLUG}/orders/(\d+)/"')


def ms(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of durations in seconds, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


@dataclass
class Sample:
    """One variant of one scenario: page and database times, queries, the rows shown."""

    times: list[float] = field(default_factory=list)
    db_times: list[float] = field(default_factory=list)
    queries: int = 0
    rows: list[int] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def p50(self) -> float:
        return ms(self.times, 0.5)


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


@dataclass
class Scenario:
    """A page to request from both views."""

    name: str
    product: dict[str, str]
    naive: dict[str, str]
    results: dict[str, Sample] = field(default_factory=dict)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def explain(sql: str, params: Any) -> str:
    """What a statement reads from orders_order, from EXPLAIN ANALYZE: the access path, rows
    read (kept + removed by a filter, all workers) and the execution time in the database."""
    import json

    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        raw = cur.fetchone()[0]
    top = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    scans = [n for n in _nodes(top["Plan"]) if n.get("Relation Name") == "orders_order"]
    if not scans:
        return f"{top['Execution Time']:.1f} ms"
    scan = scans[0]
    kind = scan["Node Type"].replace("Bitmap Heap Scan", "Bitmap Scan")
    if scan.get("Scan Direction") == "Backward":
        kind += " Backward"
    index = scan.get("Index Name") or " + ".join(
        n["Index Name"] for n in _nodes(scan) if n["Node Type"] == "Bitmap Index Scan"
    )
    # Per-loop averages; a parallel scan's loops are the leader and its workers.
    read = (scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)) * scan["Actual Loops"]
    where = f" {index}" if index else ""
    return f"{kind}{where}: {read:,.0f} rows, {top['Execution Time']:.1f} ms"


def request_once(client: Any, url: str, params: dict[str, str], sample: Sample, keep: bool) -> None:
    """One request, timed with its statements; with keep=True also its rows and plan."""
    from django.db import connection
    from django.db.utils import OperationalError

    timer = QueryTimer()
    try:
        with connection.execute_wrapper(timer):
            t0 = time.perf_counter()
            response = client.get(url, params)
            elapsed = time.perf_counter() - t0
        assert response.status_code == 200, response.status_code
    except OperationalError as exc:  # statement_timeout
        sample.error = str(exc).splitlines()[0]
        return
    sample.times.append(elapsed)
    sample.db_times.append(timer.seconds)
    sample.queries = len(timer.statements)
    if keep:
        sample.rows = [int(pk) for pk in ORDER_LINK.findall(response.content.decode())]
        sample.plans = [
            explain(sql, args) for sql, args in timer.statements if 'FROM "orders_order"' in sql
        ]


def scenarios(bench: Bench) -> list[Scenario]:
    """The pages: first, deep (row 500,000), each filter, a combination, a deep filtered one."""
    from django.db import connection
    from django.utils import timezone

    from callvault.orders.lists import Cursor

    def cursor_at(row: int, status_id: int | None = None) -> str:
        """The cursor at the row-th order (of a status), found once with OFFSET, untimed."""
        with connection.cursor() as cur:
            cur.execute(
                "SELECT created_at, id FROM orders_order WHERE project_id = %s"
                " AND status_id = COALESCE(%s::bigint, status_id)"
                " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                [bench.project_id, status_id, row - 1],
            )
            created, pk = cur.fetchone()
        return str(Cursor(created, pk))

    today = timezone.localdate()
    week = {
        "date_from": str(today - timedelta(days=37)),
        "date_to": str(today - timedelta(days=31)),
    }
    operator = str(bench.operator_ids[3])
    deep = bench.orders // 2
    deep_page = str(deep // 50 + 1)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM orders_order WHERE project_id = %s AND status_id = %s",
            [bench.project_id, bench.status_ids["accepted"]],
        )
        accepted = cur.fetchone()[0]
    deep_accepted = (accepted // 2) // 50 * 50
    filters: list[tuple[str, dict[str, str]]] = [
        ("status = accepted", {"status": "accepted"}),
        ("status = new (rare, recent)", {"status": "new"}),
        ("status = returned (rare)", {"status": "returned"}),
        ("group = cancelled (2 statuses)", {"group": "cancelled"}),
        ("group = processing (3 statuses)", {"group": "processing"}),
        ("created: a week a month ago", week),
        ("operator = one of 20", {"operator": operator}),
        ("operator = nobody", {"operator": "none"}),
        ("source = partner-y", {"source": "partner-y"}),
        ("duplicates only", {"duplicates": "only"}),
        ("no duplicates", {"duplicates": "none"}),
        ("group + operator + week", {"group": "accepted", "operator": operator, **week}),
    ]
    out = [
        Scenario("first page", {}, {}),
        Scenario(
            f"deep page (row {deep:,})",
            {"before": cursor_at(deep)},
            {"page": deep_page},
        ),
        Scenario(
            f"deep page, status = accepted (row {deep_accepted:,})",
            {
                "status": "accepted",
                "before": cursor_at(deep_accepted, bench.status_ids["accepted"]),
            },
            {"status": "accepted", "page": str(deep_accepted // 50 + 1)},
        ),
    ]
    out += [Scenario(name, params, params) for name, params in filters]
    return out


def run(bench: Bench, rounds: int, deadline: float) -> list[Scenario]:
    """Interleaved rounds of both views per scenario, until done or the deadline."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    with connection.cursor() as cur:
        cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(bench.supervisor)
    urls = {"product": f"/p/{SLUG}/orders/", "naive": f"/bench/naive/{SLUG}/"}
    done = []
    with override_settings(ROOT_URLCONF=bench_urls()):
        for scenario in scenarios(bench):
            if time.monotonic() > deadline:
                print(f"  (deadline reached: skipped {scenario.name})", flush=True)
                continue
            params = {"product": scenario.product, "naive": scenario.naive}
            results = {name: Sample() for name in urls}
            for name, url in urls.items():  # warm-up with the plan and the rows
                request_once(client, url, params[name], results[name], keep=True)
            for _ in range(rounds):
                if time.monotonic() > deadline:
                    break
                for name, url in urls.items():
                    if not results[name].error:
                        request_once(client, url, params[name], results[name], keep=False)
            for sample in results.values():
                del sample.times[0]  # the warm-up
            product, naive = results["product"], results["naive"]
            if not (product.error or naive.error):
                assert product.rows == naive.rows, f"{scenario.name}: the views disagree"
            scenario.results = results
            done.append(scenario)
            print(f"  {report_line(scenario)}", flush=True)
    return done


def report_line(s: Scenario) -> str:
    p, n = s.results["product"], s.results["naive"]
    if p.error or n.error or not p.times or not n.times:
        return f"| {s.name} | {p.error or '-'} | {n.error or '-'} |"
    return (
        f"| {s.name} | {len(p.rows)} | {p.p50:.0f} / {ms(p.times, 0.95):.0f} | "
        f"{ms(p.db_times, 0.5):.1f} | {p.queries} | "
        f"{n.p50:.0f} / {ms(n.times, 0.95):.0f} | {ms(n.db_times, 0.5):.1f} | {n.queries} | "
        f"**{n.p50 / p.p50:.1f}x** | {'; '.join(p.plans)} | {'; '.join(n.plans)} |"
    )


HEADER = (
    "| page | rows | keyset: page p50 / p95 ms | db p50 ms | queries "
    "| OFFSET+COUNT: page p50 / p95 ms | db p50 ms | queries | naive / keyset (page p50) "
    "| keyset: orders_order read by | naive: orders_order read by |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--neighbour-orders", type=int, default=200_000, help="orders of another project"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-minutes", type=float, default=25)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_minutes * 60
    if shutil.which("createdb") is None:
        print("needs PostgreSQL's client tools (createdb, dropdb) and a server on 127.0.0.1")
        return 2
    os.environ["DJANGO_SETTINGS_MODULE"] = "callvault.settings"
    with bench_database():
        import django

        django.setup()
        from django.db import connection

        t0 = time.monotonic()
        bench = load(args.orders, args.neighbour_orders)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_size_pretty(pg_total_relation_size('orders_order'))")
            size = cur.fetchone()[0]
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        print(
            f"loaded {args.orders:,} orders (+{args.neighbour_orders:,} of another project) "
            f"in {time.monotonic() - t0:.0f} s "
            f"(orders_order with indexes: {size}); PostgreSQL {version}; "
            f"{args.rounds} rounds per page, interleaved\n\n{HEADER}",
            flush=True,
        )
        results = run(bench, args.rounds, deadline)
    print(f"\n{len(results)} pages measured; database {DB_NAME} dropped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
