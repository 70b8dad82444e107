"""The token lookup a SIP proxy waits on, against a bare Django read of one row, same run.

    .venv/bin/python benchmarks/token_resolve.py [--lookups 5000] [--rounds 3] [--workers 4]

One `callvault serve` (gunicorn sync, persistent database connections) on 127.0.0.1 with
DJANGO_SETTINGS_MODULE=benchmarks.resolve_ceiling: the product's settings, middleware and
URLs plus `POST /bench/read`, a bare view that hashes the posted token and reads its row by
the unique index with one statement (benchmarks/resolve_ceiling_urls.py). Per round, fresh
tokens are issued in advance through the product's own action (`do_start_call` with the SIP
token provider, as the order card's Call button does), spread over 20 operators with their
SIP accounts and 200 orders; then 200 concurrent clients (asyncio, one connection per
lookup, as a proxy's HTTP client does against gunicorn's sync workers) spend each token
once on `POST /pbx/v1/resolve` with the PBX's secret, and look the same tokens up on
`/bench/read` (which one goes first alternates by round); then the refusal path: the spent
tokens are replayed (410 `gone`, recorded as `call.token_refused`). Figures are medians of
the rounds: lookups/s, p50/p99 latency as the clients saw it, server CPU per lookup.
Target: the lookup's p99 within 2x of the bare read's.

PostgreSQL only: a database `callvault_bench_resolve` on 127.0.0.1:5432 (user postgres,
trust auth) is created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.lead_intake import (  # noqa: E402
    CpuMeter,
    Server,
    bin_path,
    free_port,
    server_env,
)
from benchmarks.plumbing import HOST, postgres_database, run_checked  # noqa: E402

TARGET_P99_RATIO = 2.0
RESOLVE_PATH = "/pbx/v1/resolve"
BARE_PATH = "/bench/read"
SETTINGS = "benchmarks.resolve_ceiling"
OPERATORS = 20
ORDERS_PER_OPERATOR = 10


# ---- run inside a Django process (`python -c ...`, with the server's environment) ----------


def django_setup_project() -> None:
    """A project with the SIP token provider, a PBX, operators with SIP accounts and
    assigned orders, made through the product's actions; prints the PBX secret as JSON."""
    import random

    import django

    django.setup()
    from django.db import connection

    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.accounts.models import Role
    from callvault.lib.fakephones import fake_phone_numbers
    from callvault.orders.actions import (
        do_assign_order,
        do_create_default_statuses,
        do_create_product,
    )
    from callvault.orders.intake import Lead, LeadItem, do_create_order
    from callvault.telephony.setup_actions import (
        do_create_pbx,
        do_create_sip_account,
        do_update_telephony_settings,
    )

    project = do_create_project("Bench shop", "bench")
    do_create_default_statuses(project)
    do_create_product(project, sku="TEA", name="Tea", price="990.00")
    do_update_telephony_settings(
        project, {"provider": "sip_token", "sip_domain": "pbx.bench", "token_ttl_seconds": 600}
    )
    # The proxy calls from this machine: the networks check runs, as it does in production.
    _, secret = do_create_pbx(project, "bench proxy", networks=[f"{HOST}/32"])
    phones = iter(fake_phone_numbers(OPERATORS * ORDERS_PER_OPERATOR, random.Random(7)))
    for n in range(OPERATORS):
        user = do_create_user(f"op{n:02d}", "bench-password-not-used-1", validate=False)
        member = do_add_member(project, user, Role.OPERATOR)
        do_create_sip_account(member, f"{1000 + n}")
        for i in range(ORDERS_PER_OPERATOR):
            lead = Lead(phone=next(phones), name=f"Customer {n}-{i}", items=[LeadItem("TEA", 1)])
            do_assign_order(do_create_order(project, lead).order, user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    print(json.dumps({"secret": secret, "database": version}))


def django_issue_tokens(count: str, path: str) -> None:
    """Start `count` calls the way the Call button does and write "token operator" lines."""
    import django

    django.setup()
    from callvault.accounts.models import Membership
    from callvault.audit.context import Actor, acting_as
    from callvault.orders.models import Order
    from callvault.telephony.actions import do_start_call

    members = list(
        Membership.objects.filter(project__slug="bench", role="operator")
        .select_related("project", "user", "sip_account")
        .order_by("user__username")
    )
    orders: dict[int, list[Order]] = {}
    for order in Order.objects.filter(project__slug="bench").order_by("pk"):
        orders.setdefault(order.assigned_to_id or 0, []).append(order)
    started = time.perf_counter()
    with open(path, "w", encoding="ascii") as out:
        for i in range(int(count)):
            member = members[i % len(members)]
            order = orders[member.user_id][(i // len(members)) % ORDERS_PER_OPERATOR]
            with acting_as(Actor.member(member.user)):
                _, result = do_start_call(member, order)
            token = result.sip_uri.removeprefix("sip:").split("@", 1)[0]
            out.write(f"{token} {member.sip_account.username}\n")
    print(json.dumps({"seconds": time.perf_counter() - started}))


def django_queries(secret: str) -> None:
    """The SQL one lookup and one bare read run (in-process, for the record)."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with tempfile.TemporaryDirectory(prefix="callvault-bench-q-") as folder:
        path = os.path.join(folder, "t")
        with contextlib.redirect_stdout(io.StringIO()):
            django_issue_tokens("1", path)
        token, operator = Path(path).read_text().split()
    client = Client(HTTP_HOST="127.0.0.1")
    # As a server process after its first request: "last used" written (once a minute).
    warm = client.post(
        RESOLVE_PATH,
        {"token": "ct-" + "0" * 32, "operator": operator},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert warm.status_code == 404, warm.status_code
    queries: dict[str, list[str]] = {}
    for name, url, headers in (
        ("resolve", RESOLVE_PATH, {"Authorization": f"Bearer {secret}"}),
        ("bare", BARE_PATH, {}),
    ):
        with CaptureQueriesContext(connection) as ctx:
            resp = client.post(url, {"token": token, "operator": operator}, headers=headers)
        assert resp.status_code == 200, (name, resp.status_code)
        queries[name] = [" ".join(str(q["sql"]).split())[:150] for q in ctx.captured_queries]
    print(json.dumps(queries))


def in_django(env: dict[str, str], func: str, *args: str) -> Any:
    """Run a function of this module in a Django process with the run's settings."""
    code = f"from benchmarks.token_resolve import {func}; {func}(*{args!r})"
    out = run_checked(
        [sys.executable, "-c", code], {**env, "DJANGO_SETTINGS_MODULE": SETTINGS}, timeout=3600
    )
    return json.loads(out.strip().splitlines()[-1])


# ---- the load: 200 concurrent clients ------------------------------------------------------


@dataclass
class RunResult:
    """One run of lookups against one endpoint."""

    target: str
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    client_cpu_s: float
    app_cpu_s: float = 0.0
    db_cpu_s: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.seconds

    def pct(self, p: int) -> float:
        """The p-th percentile latency in milliseconds."""
        return 1000 * statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]

    @property
    def cpu_ms(self) -> float:
        return 1000 * (self.app_cpu_s + self.db_cpu_s) / max(self.count, 1)


async def _one(port: int, payload: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(payload)
        data = await reader.read()
        writer.close()
        status = int(data[9:12]) if data.startswith(b"HTTP/1.") else 0
    except (OSError, ValueError):
        status = 0
    return status, time.perf_counter() - started


async def _load(port: int, payloads: list[bytes], concurrency: int) -> list[tuple[int, float]]:
    pending = iter(payloads)
    results: list[tuple[int, float]] = []

    async def client() -> None:
        for payload in pending:  # one shared iterator: each payload is sent once
            results.append(await _one(port, payload))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


def request_bytes(path: str, token: str, operator: str, secret: str) -> bytes:
    """A lookup as a proxy's HTTP client sends it (form-encoded, one connection)."""
    body = urlencode({"token": token, "operator": operator}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def run_load(
    target: str, port: int, payloads: list[bytes], concurrency: int, meter: CpuMeter
) -> RunResult:
    """Send every payload once with `concurrency` clients; latencies and statuses."""
    app0, db0 = meter.snapshot()
    cpu0, started = time.process_time(), time.perf_counter()
    results = asyncio.run(_load(port, payloads, concurrency))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    app1, db1 = meter.snapshot()
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return RunResult(
        target,
        seconds,
        [latency for _, latency in results],
        statuses,
        cpu,
        CpuMeter.used(app0, app1),
        CpuMeter.used(db0, db1),
    )


# ---- the benchmark ------------------------------------------------------------------------

EXPECTED = {"resolve": 200, "bare": 200, "refused": 410}


@dataclass
class Series:
    """The rounds of one target."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    def median(self, value: Any) -> float:
        return float(statistics.median(value(r) for r in self.runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=5000, help="tokens per round (5000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=600, help="unrecorded lookups first")
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn sync workers"
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: any free)")
    parser.add_argument("--db-name", default="callvault_bench_resolve")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 200 <= args.lookups <= 100_000:
        raise SystemExit("--rounds must be 1..20 and --lookups 200..100000")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-resolve-"))
    try:
        with postgres_database(args.db_name) as database_url:
            return bench(args, work, database_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path, database_url: str) -> int:
    port = free_port(args.port)
    env = server_env(work / "data", database_url)
    callvault = str(bin_path("callvault"))
    run_checked([callvault, "vault", "init"], env)
    run_checked([callvault, "migrate"], env)
    info = in_django(env, "django_setup_project")
    secret = info["secret"]
    server_env_ = {
        **env,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "CALLVAULT_DATABASE_URL": f"{database_url}?application_name=bench_resolve",
    }
    server = Server("resolve", server_env_, port, args.workers, work / "server.log")
    meter = CpuMeter(0, "bench_resolve", database_url)
    series = {name: Series(name) for name in EXPECTED}
    issue_seconds: list[float] = []

    def issue(count: int) -> list[tuple[str, str]]:
        path = work / "tokens.txt"
        took = in_django(env, "django_issue_tokens", str(count), str(path))["seconds"]
        issue_seconds.append(took / count)
        return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]

    def round_of(count: int, record: bool, resolve_first: bool) -> None:
        tokens = issue(count)
        payloads = {
            name: [request_bytes(path, t, op, secret) for t, op in tokens]
            for name, path in (("resolve", RESOLVE_PATH), ("bare", BARE_PATH))
        }
        order = ["resolve", "bare"] if resolve_first else ["bare", "resolve"]
        # The refusal replays the spent tokens: after the lookups that spent them.
        for name in [*order, "refused"]:
            sent = payloads["resolve" if name == "refused" else name]
            res = run_load(name, port, sent, args.concurrency, meter)
            wrong = {s: n for s, n in res.statuses.items() if s != EXPECTED[name]}
            if wrong:
                raise RuntimeError(f"{name}: unexpected answers {wrong}\n{server.log_tail()}")
            if record:
                series[name].runs.append(res)
                print(
                    f"  round {len(series[name].runs)} {name:<8} {res.rps:7.0f} lookups/s  "
                    f"p50 {res.pct(50):6.1f} ms  p99 {res.pct(99):6.1f} ms  "
                    f"server CPU {res.cpu_ms:5.2f} ms/lookup",
                    flush=True,
                )

    try:
        server.start()
        server.wait_healthy()
        meter.root_pid = server.pid
        round_of(args.warmup, record=False, resolve_first=True)
        for r in range(args.rounds):
            round_of(args.lookups, record=True, resolve_first=r % 2 == 0)
    finally:
        server.stop()
    queries = in_django(env, "django_queries", secret)
    return report(args, info, series, queries, statistics.median(issue_seconds))


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    series: dict[str, Series],
    queries: dict[str, list[str]],
    issue_s: float,
) -> int:
    print(
        f"\ntoken resolve: {info['database']}, gunicorn sync x{args.workers}, "
        f"{args.concurrency} concurrent clients, {args.lookups} lookups per run, "
        f"{args.rounds} interleaved rounds, {os.cpu_count()} CPUs"
    )
    print(
        f"  {'target':<9}{'lookups/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'app CPU':>9}{'db CPU':>8}{'client CPU':>11}  (medians; CPU: ms per lookup)"
    )
    for s in series.values():
        print(
            f"  {s.name:<9}{s.median(lambda r: r.rps):10.0f}{s.median(lambda r: r.pct(50)):8.1f}"
            f"{s.median(lambda r: r.pct(99)):8.1f}"
            f"{s.median(lambda r: 1000 * max(r.latencies)):8.1f}"
            f"{s.median(lambda r: 1000 * r.app_cpu_s / r.count):9.2f}"
            f"{s.median(lambda r: 1000 * r.db_cpu_s / r.count):8.2f}"
            f"{s.median(lambda r: 1000 * r.client_cpu_s / r.count):11.2f}"
        )
    resolve, bare, refused = series["resolve"], series["bare"], series["refused"]
    p99 = {name: s.median(lambda r: r.pct(99)) for name, s in series.items()}
    ratio = p99["resolve"] / p99["bare"]
    per_round = [a.pct(99) / b.pct(99) for a, b in zip(resolve.runs, bare.runs, strict=True)]
    print(
        f"\n  p99 resolve / bare read: {ratio:.2f} (per round: "
        f"{', '.join(f'{x:.2f}' for x in per_round)}); refusal / bare read: "
        f"{p99['refused'] / p99['bare']:.2f}"
    )
    print(
        f"  lookups/s resolve / bare read: "
        f"{resolve.median(lambda r: r.rps) / bare.median(lambda r: r.rps):.2f}; "
        f"refused answers: {sum(r.statuses.get(410, 0) for r in refused.runs)} x 410"
    )
    print(f"  tokens issued through do_start_call: {1000 * issue_s:.1f} ms each (not measured)")
    for name, statements in queries.items():
        print(f"  SQL statements per request, {name}: {len(statements)}")
        for q in statements:
            print(f"      {q}")
    met = ratio <= TARGET_P99_RATIO
    print(
        f"\ntarget: resolve p99 within {TARGET_P99_RATIO:.0f}x of the bare read: {ratio:.2f}x "
        f"-> {'MET' if met else 'NOT MET'}"
    )
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
