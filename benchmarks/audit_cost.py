"""Cost of one audited order update against the same update without audit, beside the peers.

    .venv/bin/python benchmarks/audit_cost.py [--vendor both|postgresql|sqlite] [--ops 2000]
        [--rounds 7] [--warmup 300] [--profile-ops 1000] [--synchronous-commit on|off]
        [--json FILE] [--strict]

One unit of work is what a web request that edits an order does to the database: one
single-row `save()` in its own transaction, the object already loaded, a new address every
time (so every save changes something), with the recorder's request context entered per
operation as its middleware would. It is timed for each recorder on the same table shape
(`benchmarks/auditpeers/models.py`, 13 columns):

- plain: no audit (the baseline every ratio is against);
- django-simple-history (`HistoricalRecords`, history user set), django-auditlog (registered,
  inside `set_actor(user, remote_addr=...)`), django-pghistory (`pghistory.track()`, without
  and inside `pghistory.context(user=..., url=...)`; PostgreSQL only);
- callvault: snapshot/diff as `do_update_order` does, then the row's UPDATE and its event
  through `callvault.audit.recorder.update_recorded` (on PostgreSQL the UPDATE carries the
  event and the table's trigger writes it; on SQLite the event goes first and the UPDATE's
  trigger recognises it) under a full audit context (actor, IP, user agent, a new request id
  per operation), on a table with only that trigger and on one with the bypass check as well;
  beside it the earlier paths on the same table: the UPDATE and record_event's INSERT in one
  round trip (PostgreSQL), and `QuerySet.update()` then `record_event` (on SQLite the
  UPDATE is parked and the event's insert claims it). The run fails if a callvault edit left
  no event or was recorded as a write outside the application.

A second table measures the real path: one real `Order` updated through
`callvault.orders.actions.do_update_order` (version check, redaction, the event) against the
same order saved with a plain `save()` in a transaction (its bypass triggers switched off for
the baseline: they would record the plain save as a write outside the application), and two
controls: the action with the trigger off, and with the event left out (a plain version-checked
UPDATE, trigger off).

Each vendor runs in its own child process (Django is configured once per process) against a
fresh database: PostgreSQL `bench_audit_<pid>` on 127.0.0.1:5432 (created and dropped, also
on error), SQLite a temporary file (WAL, as the product configures it). `migrate --run-syncdb`
applies the product's real migrations and creates the peers' tables. Variants run in rotated
order within each round; the figures are medians over rounds of wall-clock µs per operation,
with the process's CPU and (PostgreSQL) its backend's CPU per operation beside them, since
CPU moves less than wall time when the machine is shared. Statements per operation are
counted once with Django's CaptureQueriesContext, and the callvault update is timed part by
part (`--profile-ops`, wall and CPU), and on PostgreSQL the database's own share is measured
by server-side DO loops (no client at all). Results and proposals: "Audit cost" in
docs/benchmarks.md. Target (from the audit-trail issue): callvault's audited update at most
1.30x the unaudited one, and no slower than pghistory with context.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database  # noqa: E402

TARGET_RATIO = 1.30
STREETS = ["Lenina St", "Tverskaya St", "Nevsky Ave", "Arbat St", "Mira Ave", "Sadovaya St"]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
CLIENT_IP = "203.0.113.7"  # documentation range
EDIT_URL = "/p/bench/orders/1/edit/"
SHAPE_FIELDS = (
    "status_id",
    "customer_name",
    "customer_tz",
    "address",
    "source",
    "comment",
    "next_call_at",
    "attempts",
    "assigned_to_id",
)


def address(i: int) -> str:
    """A different address for every operation."""
    return f"{i} {STREETS[i % len(STREETS)]}, apt {i % 97}"


# ---- parent: one child process per vendor ----------------------------------------------------


@contextlib.contextmanager
def scratch_database(vendor: str, data_dir: Path) -> Iterator[str]:
    """The run's database URL: a PostgreSQL database made for it, or an SQLite file."""
    if vendor == "sqlite":
        yield f"sqlite:///{data_dir / 'audit_bench.sqlite3'}"
        return
    with postgres_database(f"bench_audit_{os.getpid()}") as url:
        yield url


def child_env(data_dir: Path, database_url: str) -> dict[str, str]:
    """The child's environment: only this run's CALLVAULT_* settings and the peers' settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLVAULT_") and k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}
    }
    env.update(
        {
            "CALLVAULT_DEBUG": "1",  # a generated secret key and key ring in the data folder
            "CALLVAULT_DATA_DIR": str(data_dir),
            "CALLVAULT_DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "benchmarks.audit_settings",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def run_vendor(vendor: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the child for one vendor and return its figures."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"callvault-auditbench-{vendor}-"))
    try:
        with scratch_database(vendor, data_dir) as url:
            out = data_dir / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", vendor]
            cmd += ["--ops", str(args.ops), "--rounds", str(args.rounds)]
            cmd += ["--warmup", str(args.warmup), "--profile-ops", str(args.profile_ops)]
            cmd += ["--synchronous-commit", args.synchronous_commit, "--out", str(out)]
            subprocess.run(cmd, env=child_env(data_dir, url), cwd=REPO, check=True, timeout=3600)
            result: dict[str, Any] = json.loads(out.read_text())
            return result
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument("--ops", type=int, default=2000, help="operations per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=300, help="untimed operations per variant")
    parser.add_argument("--profile-ops", type=int, default=1000, help="0 skips the breakdown")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="PostgreSQL: off takes the disk flush out of every commit (a shared disk's flush "
        "latency otherwise dominates wall time)",
    )
    parser.add_argument("--json", type=Path, help="write all figures here as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    parser.add_argument("--child", choices=["postgresql", "sqlite"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 100 <= args.ops <= 100_000 or not 1 <= args.rounds <= 50:
        raise SystemExit("--ops must be 100..100000 and --rounds 1..50")
    if args.child:
        return run_child(args)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks (drops the DB)

    signal.signal(signal.SIGTERM, on_term)
    vendors = ["postgresql", "sqlite"] if args.vendor == "both" else [args.vendor]
    results = {vendor: run_vendor(vendor, args) for vendor in vendors}
    print()
    missed = False
    for vendor, result in results.items():
        for line in result["verdict"]:
            print(f"{vendor}: {line}")
        missed = missed or not result["met"]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if args.strict and missed else 0


# ---- child: the measurements on one vendor ---------------------------------------------------


@dataclass
class Variant:
    """One measured unit of work: `step(i)` performs operation number i."""

    name: str
    label: str
    group: str  # "shape" (the peers' table shape) or "order" (the real Order)
    step: Callable[[int], None]
    # Run around every batch, untimed: e.g. the real Order's bypass triggers switched off.
    enter: Callable[[], None] | None = None
    leave: Callable[[], None] | None = None
    wall: list[float] = field(default_factory=list)  # µs/op per round
    cpu_app: list[float] = field(default_factory=list)
    cpu_db: list[float] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


@dataclass
class World:
    """What the variants act on."""

    vendor: str
    user: Any
    rows: dict[str, Any]
    order: Any
    bypass: Any  # callvault.audit.bypass, once it exists
    triggers: dict[str, list[str]]


def run_child(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    # The product's migrations first: the peers' tables (synced) point at its user table.
    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)
    if args.child == "postgresql":
        import pgtrigger

        pgtrigger.install()  # pghistory's triggers on the synced (unmigrated) peer table
    if args.child == "postgresql" and args.synchronous_commit == "off":
        with connection.cursor() as cursor:  # this session only (the connection persists)
            cursor.execute("SET synchronous_commit = off")
    world = build_world(args.child)
    variants = make_variants(world)
    print(describe(world), flush=True)
    backend = backend_pid()
    for variant in variants:  # warm-up: caches, plans, the connection
        with around(variant):
            for i in range(args.warmup):
                variant.step(-1 - i)
    start = 0
    for rnd in range(args.rounds):
        shift = rnd % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            measure(variant, range(start, start + args.ops), backend)
            start += args.ops
        print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    for variant in variants:
        variant.queries = capture_queries(variant, start)
        start += 1
    result = report(world, variants)
    recorded_properly()
    if args.profile_ops:
        wall = profile_callvault(world, args.profile_ops, start, time.perf_counter)
        cpu = profile_callvault(world, args.profile_ops, start, time.process_time)
        result["profile"] = {"wall": wall, "cpu": cpu}
        print(f"\nwhere the callvault update's time goes (µs/op, {args.profile_ops} ops each):")
        print(f"   {'part':<24} {'wall':>7} {'cpu':>7}  (cpu: this process; '(db)': in the driver)")
        for part, us in wall.items():
            print(f"   {part:<24} {us:7.1f} {cpu[part]:7.1f}")
        if backend:
            result["server"] = server_side(world, args.profile_ops, 3, backend)
    connection.close()
    assert args.out is not None
    args.out.write_text(json.dumps(result, indent=2))
    return 0


def recorded_properly() -> None:
    """Every callvault variant's edit left its event, and none was taken for a write outside
    the application: a path that lost its events would look cheap."""
    from callvault.audit.models import ActorKind, AuditEvent
    from callvault.audit.parked import sweep_pending_changes

    sweep_pending_changes()  # SQLite: what is still parked was not recorded by the application
    events = AuditEvent.objects.filter(object_type="benchorder")
    outside = events.filter(actor_kind=ActorKind.UNATTRIBUTED).count()
    recorded = events.count() - outside
    print(f"\nbench events: {recorded} recorded by the application, {outside} unattributed")
    if outside or not recorded:
        raise SystemExit("the callvault variants did not record their edits as the product does")


def backend_pid() -> int | None:
    """The PostgreSQL backend serving this process (its CPU is read from /proc)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(variant: Variant, ops: range, backend: int | None) -> None:
    """Run the operations once, appending µs/op (wall, process CPU, backend CPU)."""
    with around(variant):
        db0 = proc_cpu(backend) if backend else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in ops:
            variant.step(i)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(ops)
    variant.wall.append(wall / n * 1e6)
    variant.cpu_app.append(cpu / n * 1e6)
    if backend:
        variant.cpu_db.append((proc_cpu(backend) - db0) / n * 1e6)


@contextlib.contextmanager
def around(variant: Variant) -> Iterator[None]:
    """The variant's untimed set-up and tear-down around a batch of operations."""
    if variant.enter:
        variant.enter()
    try:
        yield
    finally:
        if variant.leave:
            variant.leave()


def capture_queries(variant: Variant, i: int) -> list[str]:
    """The statements one operation sends (BEGIN/COMMIT are implicit in psycopg)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with around(variant), CaptureQueriesContext(connection) as captured:
        variant.step(i)
    return [q["sql"] for q in captured.captured_queries]


# ---- the world: users, rows, the real order, triggers -----------------------------------------


def build_world(vendor: str) -> World:
    import random

    from django.contrib.auth import get_user_model

    from benchmarks.auditpeers import models as peers
    from callvault.accounts.actions import do_create_project
    from callvault.lib.fakephones import fake_phone
    from callvault.orders.actions import do_create_default_statuses, do_create_product
    from callvault.orders.intake import Lead, LeadItem, do_create_order

    user = get_user_model().objects.create_user("bench-bob", password=None)
    project = do_create_project("Bench shop", "bench")
    do_create_default_statuses(project)
    do_create_product(project, sku="TEA", name="Tea", price="990.00")
    lead = Lead(
        phone=fake_phone(random.Random(7))[0],
        name="Ivan Petrov",
        address=address(0),
        items=[LeadItem("TEA", 2)],
        source="landing-a",
    )
    order = do_create_order(project, lead).order
    order = type(order).objects.select_related("project", "status").get(pk=order.pk)
    models: dict[str, Any] = {
        "plain": peers.PlainOrder,
        "simple_history": peers.SimpleHistoryOrder,
        "auditlog": peers.AuditlogOrder,
        "callvault": peers.CallvaultUntriggeredOrder,
        "callvault_trigger": peers.CallvaultOrder,
    }
    if hasattr(peers, "PghOrder"):
        models["pghistory"] = peers.PghOrder
    rows: dict[str, Any] = {}
    for key, model in models.items():
        rows[key] = model.objects.create(
            project_id=project.pk,
            status_id=order.status_id,
            customer_name="Ivan Petrov",
            phone_mask="+1 ***-***-**42",
            customer_tz="Europe/Moscow",
            address=address(0),
            source="landing-a",
            comment="",
        )
    bypass = load_bypass()
    if bypass is not None:
        install_bypass(bypass, vendor, peers.CallvaultOrder._meta.db_table)
        install_bypass(bypass, vendor, peers.CallvaultUntriggeredOrder._meta.db_table, check=False)
    tables = {m._meta.db_table for m in models.values()} | {order._meta.db_table}
    tables.add("audit_auditevent")
    return World(vendor, user, rows, order, bypass, {t: table_triggers(t) for t in tables})


def load_bypass() -> Any:
    """callvault.audit.bypass if it exists in this tree (it is being written concurrently)."""
    try:
        import importlib

        return importlib.import_module("callvault.audit.bypass")
    except ModuleNotFoundError:
        return None


def install_bypass(bypass: Any, vendor: str, table: str, *, check: bool = True) -> None:
    """The product's triggers on one of the peers' tables, as its spec of orders_order: the
    mask is sealed, the version and update time are bookkeeping, the edits carry their
    events (the table is added to AUDITED_TABLES in this process, so update_recorded takes
    it). `check=False`: only the trigger that writes the carried events, not the bypass
    check."""
    from django.db import connection, transaction

    spec = bypass.AuditedTable(
        table,
        "benchorder",
        "project_id",
        sealed_columns=("phone_mask",),
        ignored_columns=("version", "updated_at"),
        recorded_updates=True,
        update_stamp="updated_at",
    )
    from callvault.audit import audited

    audited.AUDITED_TABLES = (*audited.AUDITED_TABLES, spec)
    statements: list[str] = bypass.spec_sql(vendor, spec)
    if not check:
        statements = [s for s in statements if f"{table}_recorded_update" in s]
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def table_triggers(table: str) -> list[str]:
    """Names of the non-internal triggers on a table."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [table],
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
            )
        return sorted(row[0] for row in cursor.fetchall())


# ---- the variants ------------------------------------------------------------------------------


def request_context(world: World) -> Any:
    """callvault's audit context as its middleware opens it for one request."""
    from callvault.audit.context import Actor, AuditContext, new_request_id, use_context
    from callvault.audit.models import ActorKind

    actor = Actor(ActorKind.MEMBER, str(world.user.pk), world.user.get_username())
    return use_context(
        AuditContext(actor=actor, ip=CLIENT_IP, user_agent=USER_AGENT, request_id=new_request_id())
    )


def plain_save(obj: Any) -> Callable[[int], None]:
    from django.db import transaction

    def step(i: int) -> None:
        with transaction.atomic():
            obj.address = address(i)
            obj.save()

    return step


def callvault_save(world: World, obj: Any, record: Callable[..., Any]) -> Callable[[int], None]:
    """snapshot -> change -> diff -> save -> record, as do_update_order does for its order."""
    from django.db import transaction

    from callvault.audit.recorder import diff, snapshot
    from callvault.orders.actions import redact_free_text

    def step(i: int) -> None:
        with request_context(world), transaction.atomic():
            before = snapshot(obj, SHAPE_FIELDS)
            obj.address = address(i)
            changes = diff(before, snapshot(obj, SHAPE_FIELDS))
            obj.save()
            record(
                "order.update",
                project_id=obj.project_id,
                object_type="benchorder",
                object_id=obj.pk,
                object_repr=str(obj),
                changes=redact_free_text(changes),
            )

    return step


def callvault_update(world: World, obj: Any, *, path: str = "shipped") -> Callable[[int], None]:
    """snapshot -> change -> diff -> the row's UPDATE and its event in update_recorded, as
    the order actions write (every column but the key, as `_save_order` and `save()` do).
    `path` "two_steps": the UPDATE by `QuerySet.update()` and then `record_event`, as the
    actions wrote until 2026-11-29; "one_trip": the UPDATE and record_event's INSERT sent in
    one execute, the event found at COMMIT by the bypass trigger, as update_recorded did
    until 2026-11-30."""
    from django.db import connection, transaction
    from django.db.models import sql

    from callvault.audit import recorder
    from callvault.audit.recorder import diff, record_event, snapshot, update_recorded
    from callvault.orders.actions import redact_free_text

    def two_steps(queryset: Any, values: dict[str, Any], action: str, **event: Any) -> int:
        written = int(queryset.update(**values))
        record_event(action, **event)
        return written

    def one_trip(queryset: Any, values: dict[str, Any], action: str, **event: Any) -> int:
        query = queryset.query.chain(sql.UpdateQuery)
        query.add_update_values(values)
        update_sql, update_params = query.get_compiler(queryset.db).as_sql()
        event_values = recorder._event_values(action, **{"extra": None, **event})
        params = recorder._insert_params(event_values)
        with connection.cursor() as cursor:
            cursor.execute(f"{update_sql}; {recorder._INSERT}", [*update_params, *params])
            return int(cursor.rowcount)

    paths: dict[str, Callable[..., int]] = {
        "shipped": update_recorded,
        "two_steps": two_steps,
        "one_trip": one_trip,
    }
    write = paths[path]

    model = type(obj)
    names = [f.attname for f in model._meta.concrete_fields if not f.primary_key]

    def step(i: int) -> None:
        with request_context(world), transaction.atomic():
            before = snapshot(obj, SHAPE_FIELDS)
            obj.address = address(i)
            changes = diff(before, snapshot(obj, SHAPE_FIELDS))
            write(
                model.objects.filter(pk=obj.pk),
                {name: getattr(obj, name) for name in names},
                "order.update",
                project_id=obj.project_id,
                object_type="benchorder",
                object_id=obj.pk,
                object_repr=str(obj),
                changes=redact_free_text(changes),
            )

    return step


def make_variants(world: World) -> list[Variant]:
    from auditlog.context import set_actor
    from django.db import transaction

    rows, user = world.rows, world.user
    shs = rows["simple_history"]

    def simple_history(i: int) -> None:
        shs._history_user = user  # what its HistoryRequestMiddleware supplies
        with transaction.atomic():
            shs.address = address(i)
            shs.save()

    def auditlog(i: int) -> None:
        with set_actor(user, remote_addr=CLIENT_IP), transaction.atomic():
            rows["auditlog"].address = address(i)
            rows["auditlog"].save()

    variants = [
        Variant("plain", "no audit (baseline)", "shape", plain_save(rows["plain"])),
        Variant("simple_history", "django-simple-history", "shape", simple_history),
        Variant("auditlog", "django-auditlog (set_actor)", "shape", auditlog),
    ]
    if "pghistory" in rows:
        import pghistory

        pgh_step = plain_save(rows["pghistory"])

        def pghistory_context(i: int) -> None:
            with pghistory.context(user=user.pk, url=EDIT_URL):
                pgh_step(i)

        variants += [
            Variant("pghistory", "django-pghistory (triggers)", "shape", pgh_step),
            Variant("pghistory_ctx", "django-pghistory + context", "shape", pghistory_context),
        ]
    variants.append(
        Variant(
            "callvault",
            "callvault, no bypass trigger",
            "shape",
            callvault_update(world, rows["callvault"]),
        )
    )
    triggered = rows["callvault_trigger"]
    if world.bypass is not None:
        variants.append(
            Variant(
                "callvault_trigger",
                "callvault with the bypass trigger",
                "shape",
                callvault_update(world, triggered),
            )
        )
        if world.vendor == "postgresql":  # SQLite runs one statement per execute
            variants.append(
                Variant(
                    "callvault_one_trip",
                    "callvault: UPDATE; INSERT in one trip (until 11-30)",
                    "shape",
                    callvault_update(world, triggered, path="one_trip"),
                )
            )
        variants.append(
            Variant(
                "callvault_two_steps",
                "callvault as two statements: update(), record_event",
                "shape",
                callvault_update(world, triggered, path="two_steps"),
            )
        )
    variants += order_variants(world)
    return variants


def order_variants(world: World) -> list[Variant]:
    """The real Order: plain save(), do_update_order, and the action without its parts."""
    from callvault.orders import actions

    order = world.order

    def action(i: int) -> None:
        with request_context(world):
            actions.do_update_order(order, {"address": address(i)})

    def action_unrecorded(i: int) -> None:
        namespace = vars(actions)  # the action looks update_recorded up in its module
        real = namespace["update_recorded"]
        namespace["update_recorded"] = lambda queryset, values, *a, **k: queryset.update(**values)
        try:
            action(i)
        finally:
            namespace["update_recorded"] = real

    def off() -> None:
        order_triggers(world, on=False)

    def on() -> None:
        order_triggers(world, on=True)

    def check_off() -> None:
        order_triggers(world, on=False, check_only=True)

    def check_on() -> None:
        order_triggers(world, on=True, check_only=True)

    return [
        Variant(
            "order_plain", "Order: plain save(), no trigger", "order", plain_save(order), off, on
        ),
        Variant("order_action", "Order: do_update_order (as shipped)", "order", action),
        Variant(
            "order_action_notrigger",
            "Order: do_update_order, bypass trigger off",
            "order",
            action,
            check_off,
            check_on,
        ),
        Variant(
            "order_action_norecord",
            "Order: do_update_order, no event, no trigger",
            "order",
            action_unrecorded,
            off,
            on,
        ),
    ]


def order_triggers(world: World, *, on: bool, check_only: bool = False) -> None:
    """The real Order table's triggers on or off (off for the unaudited baselines: a plain
    save() would otherwise be recorded by the trigger as a write outside the app).
    `check_only`: the bypass check only; the trigger that writes the carried events stays."""
    from django.db import connection

    table = world.order._meta.db_table
    names = [
        n for n in world.triggers.get(table, []) if not check_only or "_recorded_update" not in n
    ]
    if not names:
        return
    with connection.cursor() as cursor:
        if world.vendor == "postgresql":
            for name in names:
                cursor.execute(
                    f"ALTER TABLE {table} {'ENABLE' if on else 'DISABLE'} TRIGGER {name}"
                )
            return
        statements = world.bypass.drop_sql("sqlite", table)
        if on:
            statements += world.bypass.spec_sql("sqlite", world.bypass.audited_table(table))
        for statement in statements:
            cursor.execute(statement)


# ---- the part-by-part breakdown of callvault's update -----------------------------------------


class DbTimer:
    """An execute_wrapper that adds up the time spent in the driver (round trip + server)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds = 0.0
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = self.clock()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += self.clock() - t0
            self.count += 1


def profile_callvault(
    world: World, ops: int, start: int, clock: Callable[[], float]
) -> dict[str, float]:
    """µs per operation in each part of the callvault update (on the target table), by
    `clock`: wall time (time.perf_counter) or this process's CPU (time.process_time)."""
    from django.db import connection, transaction

    from callvault.audit.recorder import diff, snapshot, update_recorded
    from callvault.orders.actions import redact_free_text

    obj = world.rows["callvault_trigger" if world.bypass is not None else "callvault"]
    model = type(obj)
    names = [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    parts = dict.fromkeys(
        [
            "context",
            "snapshot+diff",
            "update+event (python)",
            "update+event (db)",
            "begin+commit",
        ],
        0.0,
    )
    timer = DbTimer(clock)
    with connection.execute_wrapper(timer):
        for i in range(start, start + ops):
            t0 = clock()
            with request_context(world):
                t1 = clock()
                atomic = transaction.atomic()
                atomic.__enter__()
                try:
                    t2 = clock()
                    before = snapshot(obj, SHAPE_FIELDS)
                    obj.address = address(i)
                    changes = redact_free_text(diff(before, snapshot(obj, SHAPE_FIELDS)))
                    t3 = clock()
                    db0 = timer.seconds
                    update_recorded(
                        model.objects.filter(pk=obj.pk),
                        {name: getattr(obj, name) for name in names},
                        "order.update",
                        project_id=obj.project_id,
                        object_type="benchorder",
                        object_id=obj.pk,
                        object_repr=str(obj),
                        changes=changes,
                    )
                    t4, db1 = clock(), timer.seconds
                finally:
                    atomic.__exit__(None, None, None)
                t5 = clock()
            t6 = clock()
            parts["context"] += (t1 - t0) + (t6 - t5)
            parts["snapshot+diff"] += t3 - t2
            parts["update+event (python)"] += (t4 - t3) - (db1 - db0)
            parts["update+event (db)"] += db1 - db0
            parts["begin+commit"] += (t5 - t4) + (t2 - t1)
    return {k: v / ops * 1e6 for k, v in parts.items()}


# ---- PostgreSQL's own share: the same writes from a server-side loop -----------------------

SERVER_EVENT = """
    INSERT INTO audit_auditevent (created_at, project_id, actor_kind, actor_id, actor_name,
        action, object_type, object_id, object_repr, changes, extra, ip, user_agent, request_id)
    VALUES (now(), {project}, 'member', '1', 'bench-bob', 'order.update', 'benchorder',
        '{pk}', '#{pk}', jsonb_build_object('address', jsonb_build_array('a', i::text)), '{{}}',
        '203.0.113.7', 'Mozilla/5.0', md5(i::text));
"""
SERVER_CONTEXT = """
    PERFORM set_config('pghistory.context_id', gen_random_uuid()::text, true),
        set_config('pghistory.context_metadata', '{{"user": 1, "url": "/p/bench/"}}', true);
"""
# What update_recorded's WHERE sets: the event as JSON and the row's key.
SERVER_CARRIED = """
    PERFORM set_config('callvault.event', '{{"created_at": "' || now() || '", "actor_kind":
        "member", "actor_id": "1", "actor_name": "bench-bob", "action": "order.update",
        "object_repr": "#{pk}", "changes": {{"address": ["a", "' || i || '"]}}, "extra": {{}},
        "ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "request_id": "' || md5(i::text)
        || '"}}', true), set_config('callvault.event_key', 'benchorder:{project}:{pk}', true);
"""


def server_loop(
    table: str, pk: int, project: int, ops: int, *, event: bool, ctx: bool, carried: bool
) -> str:
    """A DO block committing `ops` single-row updates (each with its audit INSERT when
    `event`, each inside a pghistory context when `ctx`, each carrying its event as
    update_recorded's statement does when `carried`): the server's work with no client."""
    body = SERVER_CONTEXT if ctx else ""
    body += SERVER_CARRIED.format(project=project, pk=pk) if carried else ""
    body += f"UPDATE {table} SET address = i::text || ' Lenina St', updated_at = now() "  # noqa: S608 (our ids)
    body += f"WHERE id = {pk};"
    if event:
        body += SERVER_EVENT.format(project=project, pk=pk)
    return f"DO $$ BEGIN FOR i IN 1..{ops} LOOP {body} COMMIT; END LOOP; END $$"


def server_side(world: World, ops: int, rounds: int, backend: int) -> dict[str, Any]:
    """µs per operation (wall and backend CPU) of the database's own work per recorder."""
    from django.db import connection

    rows = world.rows
    # label, table, event INSERT, pghistory context, carried event
    cases: list[tuple[str, str, bool, bool, bool]] = [
        ("plain: UPDATE", "plain", False, False, False),
        ("pghistory: UPDATE (its trigger)", "pghistory", False, False, False),
        ("pghistory + context: set_config + UPDATE", "pghistory", False, True, False),
        ("callvault: UPDATE + event INSERT, no bypass check", "callvault", True, False, False),
    ]
    if world.bypass is not None:
        cases += [
            ("callvault: UPDATE + INSERT + bypass check", "callvault_trigger", True, False, False),
            ("callvault: UPDATE carries event, no check", "callvault", False, False, True),
            ("callvault: UPDATE carries event + check", "callvault_trigger", False, False, True),
        ]
    figures: dict[str, dict[str, list[float]]] = {c[0]: {"wall": [], "cpu": []} for c in cases}
    for rnd in range(rounds):
        shift = rnd % len(cases)
        for label, key, event, ctx, carried in cases[shift:] + cases[:shift]:
            obj = rows[key]
            sql = server_loop(
                obj._meta.db_table,
                obj.pk,
                obj.project_id,
                ops,
                event=event,
                ctx=ctx,
                carried=carried,
            )
            cpu0, t0 = proc_cpu(backend), time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql)
            wall, cpu = time.perf_counter() - t0, proc_cpu(backend) - cpu0
            figures[label]["wall"].append(wall / ops * 1e6)
            figures[label]["cpu"].append(cpu / ops * 1e6)
    base = figures[cases[0][0]]
    print(f"\nPostgreSQL's own work per operation (a DO loop, {ops} commits, {rounds} rounds):")
    print(f"   {'':<48} {'wall µs':>8} {'cpu µs':>7} {'cpu x':>6}")
    out = {}
    for label, fig in figures.items():
        row = {"wall": med(fig["wall"]), "cpu": med(fig["cpu"])}
        # A few ops may stay under the clock's tick.
        row["cpu_ratio"] = row["cpu"] / med(base["cpu"]) if med(base["cpu"]) else float("nan")
        out[label] = row
        print(f"   {label:<48} {row['wall']:8.0f} {row['cpu']:7.0f} {row['cpu_ratio']:5.2f}x")
    return out


# ---- output ------------------------------------------------------------------------------------


def describe(world: World) -> str:
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SHOW server_version" if world.vendor == "postgresql" else "SELECT sqlite_version()"
        )
        version = cursor.fetchone()[0]
    lines = [f"\n== {world.vendor} {version}, Django {django.get_version()}, {peer_versions()}"]
    if world.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            lines.append(f"   synchronous_commit = {cursor.fetchone()[0]}")
    for table, names in sorted(world.triggers.items()):
        lines.append(f"   triggers on {table}: {', '.join(names) or 'none'}")
    if world.bypass is None:
        lines.append("   callvault/audit/bypass.py is missing: no bypass-trigger row")
    return "\n".join(lines)


def peer_versions() -> str:
    from importlib.metadata import version

    names = ["django-simple-history", "django-auditlog", "django-pghistory"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(world: World, variants: list[Variant]) -> dict[str, Any]:
    """Print the tables and the target check; return the figures."""
    base = {v.group: v for v in variants if v.name in ("plain", "order_plain")}
    out: dict[str, Any] = {"vendor": world.vendor, "triggers": world.triggers, "rows": {}}
    header = f"{'variant':<56} {'µs/op':>7} {'range':>13} {'ratio':>6} {'r range':>11} "
    header += f"{'cpu app':>7} {'cpu db':>7} {'cpu x':>6} {'stmts':>5}"
    for group in ("shape", "order"):
        print("\n" + header)
        for v in (v for v in variants if v.group == group):
            b = base[group]
            ratios = [w / bw for w, bw in zip(v.wall, b.wall, strict=True)]
            cpu = [
                a + d for a, d in zip(v.cpu_app, v.cpu_db or [0.0] * len(v.cpu_app), strict=True)
            ]
            bcpu = [
                a + d for a, d in zip(b.cpu_app, b.cpu_db or [0.0] * len(b.cpu_app), strict=True)
            ]
            row: dict[str, Any] = {
                "label": v.label,
                "us_per_op": med(v.wall),
                "us_range": [min(v.wall), max(v.wall)],
                "ratio": med(ratios),
                "ratio_range": [min(ratios), max(ratios)],
                "cpu_app": med(v.cpu_app),
                "cpu_db": med(v.cpu_db),
                "cpu_ratio": med(cpu) / med(bcpu),
                "statements": len(v.queries),
                "sql": [q[:300] for q in v.queries],
            }
            out["rows"][v.name] = row
            print(
                f"{v.label:<56} {row['us_per_op']:7.0f} "
                f"{row['us_range'][0]:6.0f}-{row['us_range'][1]:<6.0f} {row['ratio']:5.2f}x "
                f"{row['ratio_range'][0]:4.2f}-{row['ratio_range'][1]:<4.2f}x "
                f"{row['cpu_app']:7.0f} {row['cpu_db']:7.0f} {row['cpu_ratio']:5.2f}x "
                f"{row['statements']:5d}"
            )
    for name in ("callvault_trigger", "callvault", "order_action"):
        if name in out["rows"]:
            print(f"\nstatements of {name} (as captured, BEGIN and COMMIT included):")
            for sql in out["rows"][name]["sql"]:
                print(f"   {sql[:160]}")
    verdict, met = target_check(out["rows"])
    out["verdict"], out["met"] = verdict, met
    print("\n" + "\n".join(verdict), flush=True)
    return out


def target_check(rows: dict[str, Any]) -> tuple[list[str], bool]:
    """The issue's target on callvault's row (with the bypass trigger when it exists)."""
    name = "callvault_trigger" if "callvault_trigger" in rows else "callvault"
    ratio = rows[name]["ratio"]
    met = ratio <= TARGET_RATIO
    lines = [f"{name}: {ratio:.2f}x the unaudited update (target <= {TARGET_RATIO:.2f}x)"]
    if "pghistory_ctx" in rows:
        peer = rows["pghistory_ctx"]["ratio"]
        met = met and ratio <= peer
        lines.append(f"   pghistory with context: {peer:.2f}x (target: callvault <= it)")
    real = rows["order_action"]["ratio"]
    lines.append(f"   real Order, do_update_order vs plain save(): {real:.2f}x")
    lines.append(f"   target {'MET' if met else 'NOT MET'}")
    return lines, met


if __name__ == "__main__":
    sys.exit(main())
