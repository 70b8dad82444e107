"""What an audited order edit costs the database, part by part (PostgreSQL).

    .venv/bin/python benchmarks/audit_write_parts.py [--ops 2000] [--rounds 6]

The audit-cost benchmark (`benchmarks/audit_cost.py`) measures the whole edit against an
unaudited one. This script takes the database's share apart, in a throw-away database
(`bench_parts_<pid>` on 127.0.0.1:5432, migrated with the product's migrations, one order made
by `do_create_order`). Figures are the backend's CPU (from /proc, 10 ms ticks) per edit, the
median of `--rounds`, `--ops` edits per round, variants in rotated order within each round.

1. **The bypass trigger**, in a server-side DO loop (no client): the event's INSERT and the
   order's UPDATE, then COMMIT (so deferred triggers fire), for the order table's triggers as
   shipped and for variants installed for the run only (not product code):
   - what the trigger's WHEN costs (OLD against NEW whose bookkeeping columns are put back to
     OLD's) against a WHEN that compares the rows directly and the one used before
     2026-11-30 (`(to_jsonb(OLD) - ignored) IS DISTINCT FROM (to_jsonb(NEW) - ignored)`),
     with a function that does nothing;
   - deferred against immediate, and SECURITY DEFINER against none;
   - the shipped function against one that only probes for the application's event, reading
     the row's ids through `to_jsonb(NEW)` (as the generic function must) or statically
     (`NEW.id`, as a function generated per table could);
   - and the edit as shipped since 2026-11-30: the UPDATE carries its event in two
     transaction-local settings and the order's trigger writes it, with that trigger alone
     and with the shipped triggers (the bypass check then skips the row).
2. **The statements from a client**, as Django sends them (values bound client-side, one
   transaction per edit, the order's bypass triggers off, the trigger that writes carried
   events on): an empty transaction, the order's UPDATE, the event's INSERT, both in two
   round trips (`update()`, then `record_event`), in one (as `update_recorded` sent them
   until 2026-11-30), the UPDATE carrying its event (as `update_recorded` sends it now), and
   both in one statement (a data-modifying WITH, tried and dropped); then the same with the
   session's synchronous_commit off, with the event table's indexes cut to the three the
   triggers and the timeline need, and to its key alone.

Results: docs/benchmarks.md, "Audit cost", "Where the database's share goes".
"""

from __future__ import annotations

import argparse
import os
import re
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

CHEAP_WHEN = "OLD.* IS DISTINCT FROM NEW.*"

NOOP = """CREATE FUNCTION bench_noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NULL; END $$"""

# The probe alone, as the generic function would do it first (ids read from to_jsonb) and as
# a function generated per table could (ids read from NEW itself). A miss raises: every edit
# of this loop is recorded, so a miss would mean the variant measures something else.
PROBE = """CREATE FUNCTION bench_probe_{kind}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE cur jsonb;
BEGIN
    {read}
    PERFORM 1 FROM audit_auditevent
    WHERE project_id = {project} AND object_type = 'order' AND object_id = {obj}
      AND txid = txid_current() AND actor_kind <> 'unattributed'
    ORDER BY id DESC LIMIT 1;
    IF FOUND THEN RETURN NULL; END IF;
    RAISE EXCEPTION 'the application''s event was not found';
END $$"""
PROBES = {
    "jsonb": {
        "read": "cur := to_jsonb(NEW);",
        "project": "(cur ->> 'project_id')::bigint",
        "obj": "cur ->> 'id'",
    },
    "static": {"read": "", "project": "NEW.project_id", "obj": "NEW.id::text"},
}


def loop(order: int, project: int, ops: int, *, event: str) -> str:
    """A DO block committing `ops` edits of one order: `event` "insert" writes each edit's
    event by its own INSERT (as record_event does), "carried" sets it for the UPDATE as
    update_recorded's WHERE does (the order's trigger writes it), "none" writes none."""
    body = ""
    if event == "insert":
        body += (
            "INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, "  # noqa: S608 (our ids)
            "actor_name, action, object_type, object_id, object_repr, changes, extra, ip, "
            f"user_agent, request_id) VALUES (now(), {project}, 'member', '1', 'bench-bob', "
            f"'order.update', 'order', '{order}', '#1', jsonb_build_object('address', "
            "jsonb_build_array('a', i::text)), '{}', '203.0.113.7', 'Mozilla/5.0', md5(i::text));"
        )
    elif event == "carried":
        body += (
            "PERFORM set_config('callvault.event', '{\"created_at\": \"' || now() || '\", "
            '"actor_kind": "member", "actor_id": "1", "actor_name": "bench-bob", "action": '
            '"order.update", "object_repr": "#1", "changes": {"address": ["a", "\' || i || \'"]}, '
            '"extra": {}, "ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "request_id": "\' '
            "|| md5(i::text) || '\"}', true), "
            f"set_config('callvault.event_key', 'order:{project}:{order}', true);"
        )
    body += (
        "UPDATE orders_order SET address = i::text || ' Lenina St', updated_at = now(), "  # noqa: S608
        f"version = version + 1 WHERE id = {order};"
    )
    return f"DO $$ BEGIN FOR i IN 1..{ops} LOOP {body} COMMIT; END LOOP; END $$"


def run_child(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from callvault.audit.audited import audited_table
    from callvault.audit.bypass import PG_BYPASS_FUNCTION, drop_sql, spec_sql
    from callvault.lib.fakephones import fake_phone
    from callvault.orders.intake import Lead, LeadItem, do_create_order
    from conftest import make_project

    call_command("migrate", verbosity=0)
    order = do_create_order(
        make_project("bench"),
        Lead(phone=fake_phone()[0], name="Bench Bob", address="Moscow", items=[LeadItem("TEA", 1)]),
    ).order
    spec = audited_table("orders_order")
    shipped = spec_sql("postgresql", spec)
    # The WHEN before 2026-11-30: the two rows as jsonb, the bookkeeping taken out of both.
    ignored = "ARRAY[" + ", ".join(f"'{c}'" for c in spec.ignored_columns) + "]"
    two_jsonb = f"(to_jsonb(OLD) - {ignored}) IS DISTINCT FROM (to_jsonb(NEW) - {ignored})"

    def triggers(function: str = "", *, when: str = "", deferred: bool = True) -> list[str]:
        """The shipped bypass triggers (not the carried events' one) with a part swapped."""
        out = []
        for statement in shipped:
            if "_recorded_update" in statement:
                continue
            if function:
                statement = statement.replace("callvault_audit_bypass(", function + "(")
            if when and "_bypass_update" in statement:
                statement = re.sub(r"WHEN \(.*\) EXECUTE", f"WHEN ({when}) EXECUTE", statement)
            if not deferred:
                statement = statement.replace("CONSTRAINT TRIGGER", "TRIGGER").replace(
                    "DEFERRABLE INITIALLY DEFERRED ", ""
                )
            out.append(statement)
        return out

    lean = PG_BYPASS_FUNCTION.replace("CREATE OR REPLACE FUNCTION callvault_audit_bypass()", "")
    lean = "CREATE FUNCTION bench_nodefiner()" + lean.replace(
        "SECURITY DEFINER SET search_path FROM CURRENT", ""
    )
    with connection.cursor() as cursor:
        cursor.execute(NOOP)
        cursor.execute(lean)
        for kind, parts in PROBES.items():
            cursor.execute(PROBE.format(kind=kind, **parts))
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()

    carrier = [statement for statement in shipped if "_recorded_update" in statement]
    variants: list[tuple[str, list[str] | None, str]] = [
        ("UPDATE only, no trigger", None, "none"),
        ("UPDATE + event INSERT, no trigger", None, "insert"),
        ("+ the bypass trigger as shipped", shipped, "insert"),
        ("+ shipped WHEN, a function doing nothing", triggers("bench_noop"), "insert"),
        ("+ WHEN false, a function doing nothing", triggers("bench_noop", when="false"), "insert"),
        (
            "+ rows compared, a function doing nothing",
            triggers("bench_noop", when=CHEAP_WHEN),
            "insert",
        ),
        (
            "+ two to_jsonb() compared, a function doing nothing",
            triggers("bench_noop", when=two_jsonb),
            "insert",
        ),
        ("+ shipped trigger, not deferred", triggers(deferred=False), "insert"),
        ("+ shipped function without SECURITY DEFINER", triggers("bench_nodefiner"), "insert"),
        ("+ shipped WHEN, probe only (ids from to_jsonb)", triggers("bench_probe_jsonb"), "insert"),
        ("+ shipped WHEN, probe only (ids from NEW)", triggers("bench_probe_static"), "insert"),
        (
            "+ rows compared, probe only (ids from NEW)",
            triggers("bench_probe_static", when=CHEAP_WHEN),
            "insert",
        ),
        ("UPDATE carrying its event, its trigger only", carrier, "carried"),
        ("UPDATE carrying its event, triggers as shipped", shipped, "carried"),
    ]
    ticks = os.sysconf("SC_CLK_TCK")

    def backend_cpu() -> float:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    cpu: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    wall: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for rnd in range(args.rounds):
        shift = rnd % len(variants)
        for label, statements, event in variants[shift:] + variants[:shift]:
            with connection.cursor() as cursor:
                for statement in drop_sql("postgresql", "orders_order") + (statements or []):
                    cursor.execute(statement)
                c0, t0 = backend_cpu(), time.perf_counter()
                cursor.execute(loop(order.pk, order.project_id, args.ops, event=event))
                wall[label].append((time.perf_counter() - t0) / args.ops * 1e6)
                cpu[label].append((backend_cpu() - c0) / args.ops * 1e6)
    base = statistics.median(cpu[variants[1][0]])
    print(
        "\n1. the bypass trigger: backend CPU µs per edit in a DO loop "
        f"({args.ops} edits per round, median of {args.rounds} rounds;"
        " 'vs edit': against UPDATE + event INSERT with no trigger)"
    )
    print(f"   {'':<50} {'cpu':>6} {'range':>11} {'vs edit':>8} {'wall':>6}")
    for label, _, _ in variants:
        figures = cpu[label]
        median = statistics.median(figures)
        print(
            f"   {label:<50} {median:6.0f} {min(figures):5.0f}-{max(figures):<5.0f} "
            f"{median - base:+8.0f} {statistics.median(wall[label]):6.0f}"
        )
    client_parts(args, order.pk, backend_cpu)
    return 0


# The event table's indexes the bypass triggers (audit_object_idx) and the timeline
# (audit_actor_idx) read, besides its key; the others serve the audit search.
KEPT_INDEXES = ("audit_auditevent_pkey", "audit_object_idx", "audit_actor_idx")


def client_parts(args: argparse.Namespace, pk: int, backend_cpu: Callable[[], float]) -> None:
    """Part 2: backend CPU per transaction of an edit's statements sent from a client."""
    import psycopg
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from callvault.audit.audited import audited_table
    from callvault.audit.bypass import drop_sql, spec_sql
    from callvault.audit.recorder import record_event
    from callvault.orders.actions import do_update_order
    from callvault.orders.models import Order

    # The bypass triggers off; the one that writes carried events stays (its WHEN, false for
    # the other statements, costs them a few µs).
    carrier = [s for s in spec_sql("postgresql", audited_table("orders_order")) if "_recorded" in s]
    with connection.cursor() as cursor:
        for statement in drop_sql("postgresql", "orders_order") + carrier:
            cursor.execute(statement)
    order = Order.objects.select_related("project", "status").get(pk=pk)
    with CaptureQueriesContext(connection) as captured:
        do_update_order(order, {"address": "1 Tverskaya St"})
    (carried,) = [q["sql"] for q in captured.captured_queries if "set_config" in q["sql"]]
    # The same edit every time: without its version check it can be repeated.
    carried = re.sub(r' AND "orders_order"\."version" = \d+', "", carried)
    update = re.sub(r" AND \(set_config\(.*\) IS NOT NULL\)", "", carried)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        record_event(
            "order.update",
            project_id=order.project_id,
            object_type="order",
            object_id=order.pk,
            object_repr=str(order),
            changes={"address": ["Moscow", "1 Tverskaya St"]},
        )
    (event,) = [q["sql"] for q in captured.captured_queries if "INSERT INTO audit" in q["sql"]]
    sent = f"{update}; {event}"
    # Tried and dropped: one statement that writes the event only if the row was written.
    columns, values = event.split(") VALUES (", 1)
    values = values.rsplit(") RETURNING id", 1)[0]
    with_query = (
        f"WITH written AS ({update} RETURNING 1), event AS ({columns}) SELECT {values} "  # noqa: S608 (the product's own SQL)
        "WHERE EXISTS (SELECT 1 FROM written) RETURNING id) "
        "SELECT (SELECT count(*) FROM written), (SELECT id FROM event)"
    )
    raw = connection.connection  # psycopg's own connection: nothing of Django's in the loop
    # Client-side binding, as Django's: the simple protocol, which takes two statements.
    client = psycopg.ClientCursor(raw)
    parts = {
        "empty transaction (BEGIN, COMMIT)": [],
        "the order's UPDATE": [update],
        "the event's INSERT": [event],
        "both, in two round trips (update, record_event)": [update, event],
        "both, in one round trip (update_recorded until 04:00)": [sent],
        "the UPDATE carrying its event (update_recorded)": [carried],
        "both in one statement, a data-modifying WITH": [with_query],
    }

    def measure(setting: str) -> None:
        cpu: dict[str, list[float]] = {label: [] for label in parts}
        for rnd in range(args.rounds):
            shift = rnd % len(parts)
            labels = list(parts)
            for label in labels[shift:] + labels[:shift]:
                c0 = backend_cpu()
                for _ in range(args.ops):
                    with raw.transaction():
                        for statement in parts[label]:
                            client.execute(statement)
                cpu[label].append((backend_cpu() - c0) / args.ops * 1e6)
        base = statistics.median(cpu["empty transaction (BEGIN, COMMIT)"])
        print(f"\n   {setting}")
        for label, figures in cpu.items():
            median = statistics.median(figures)
            print(
                f"   {label:<50} {median:6.0f} {min(figures):5.0f}-{max(figures):<5.0f} "
                f"{median - base:+8.0f}"
            )

    print(
        "\n2. the statements: backend CPU µs per transaction from a client "
        f"({args.ops} per round, median of {args.rounds} rounds; "
        "the last column against an empty transaction)"
    )
    measure("as shipped (synchronous_commit on, the event table's 8 indexes)")
    raw.execute("SET synchronous_commit = off")
    measure("synchronous_commit off")
    raw.execute("SET synchronous_commit = on")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'audit_auditevent' "
            "AND indexname <> ALL(%s)",
            [list(KEPT_INDEXES)],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
    measure("the event table's key, audit_object_idx and audit_actor_idx only")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX audit_object_idx")
        cursor.execute("DROP INDEX audit_actor_idx")
    measure("the event table's key only")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    with (
        tempfile.TemporaryDirectory(prefix="callvault-partsbench-") as data_dir,
        postgres_database(f"bench_parts_{os.getpid()}") as url,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
        env.update(
            {
                "CALLVAULT_DEBUG": "1",  # a generated secret key and key ring in the data folder
                "CALLVAULT_DATA_DIR": data_dir,
                "CALLVAULT_DATABASE_URL": url,
                "DJANGO_SETTINGS_MODULE": "callvault.settings",
                "PYTHONPATH": str(REPO),
            }
        )
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child"]
        cmd += ["--ops", str(args.ops), "--rounds", str(args.rounds)]
        return subprocess.run(cmd, env=env, cwd=REPO, check=False, timeout=3600).returncode


if __name__ == "__main__":
    sys.exit(main())
