"""Lead intake through the real HTTP stack against the framework's ceiling, in the same run.

    .venv/bin/python benchmarks/lead_intake.py [--sqlite] [--rounds 3] [--duration 10]

Two servers run side by side, each `callvault serve --workers 2` (gunicorn sync) on 127.0.0.1
with persistent database connections: the product (callvault.settings) and the ceiling
(benchmarks.ceiling: the same settings plus `POST /bench/bare`, a bare Django view that parses
the JSON and inserts one plain row). wrk (32 connections) posts a lead with a different
reserved-range number per request, alternating the two in interleaved rounds; the figures are
medians of the rounds. Target: the product's requests/s at least 50% of the ceiling's.

Beside requests/s and latency it reports the server-side CPU per request (the gunicorn
processes from /proc, and on PostgreSQL the backends found by application_name): it moves
far less than requests/s when other work shares the machine.

PostgreSQL (default): a database `callvault_bench` on 127.0.0.1:5432 (user postgres, trust
auth) is created for the run and dropped afterwards. `--sqlite` uses a file in a temp folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import HOST, postgres_database, run_checked  # noqa: E402

TARGET_RATIO = 0.5
LEAD_PATH = "/api/v1/leads"
BARE_PATH = "/bench/bare"

# wrk script: one lead per request, a different reserved-range number each time (555-01xx in
# a random area code of callvault.lib.fakephones), and a machine-readable summary at the end.
LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer __KEY__"
local area_codes = {__AREA_CODES__}
local names = {"Ivan Petrov", "Anna Smirnova", "Olga Ivanova", "Pavel Sokolov", "Maria Popova"}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end

function request()
  local phone = string.format("+1 %s 555 01%02d",
    area_codes[math.random(#area_codes)], math.random(0, 99))
  local body = string.format(
    '{"phone": "%s", "name": "%s", "items": [{"sku": "TEA", "quantity": %d}]}',
    phone, names[math.random(#names)], math.random(1, 3))
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class WrkResult:
    """One wrk run."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    max_us: int
    non2xx: int
    connect: int
    read: int
    write: int
    timeout: int
    app_cpu_s: float = 0.0  # CPU of the server's gunicorn processes during the run
    db_cpu_s: float = 0.0  # CPU of its PostgreSQL backends (0 for SQLite: it is in-process)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def errors(self) -> int:
        return self.non2xx + self.connect + self.read + self.write + self.timeout

    @property
    def cpu_ms(self) -> float:
        """Server-side CPU per answered request (application + database), milliseconds."""
        return 1000 * (self.app_cpu_s + self.db_cpu_s) / max(self.requests, 1)


@dataclass
class Target:
    """One endpoint under load and its rounds."""

    name: str
    url: str
    results: list[WrkResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_us for r in self.results) / 1000

    @property
    def cpu_ms(self) -> float:
        return statistics.median(r.cpu_ms for r in self.results)


class Server:
    """`callvault serve` in its own process group, always stopped by `stop()`."""

    def __init__(self, name: str, env: dict[str, str], port: int, workers: int, log: Path):
        self.name, self.env, self.port, self.workers, self.log = name, env, port, workers, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self._log_fh = self.log.open("wb")
        cmd = [
            str(bin_path("callvault")),
            "serve",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(self.workers),
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=REPO,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} server not healthy after {timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """TERM the process group (master and workers), KILL it if the master lingers.

        Only while the master is alive and unreaped, so the group id is surely still ours; sync
        workers whose master has died exit by themselves."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


def bin_path(name: str) -> Path:
    """A console script of the virtualenv this benchmark runs under (else the repo's .venv)."""
    here = Path(sys.executable).parent / name
    return here if here.exists() else REPO / ".venv" / "bin" / name


def free_port(wanted: int = 0) -> int:
    """A port on 127.0.0.1 nobody listens on (`wanted`, checked, or one the kernel picks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, wanted))
        except OSError:
            raise SystemExit(f"port {wanted} on {HOST} is in use") from None
        return int(sock.getsockname()[1])


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still alive."""
    out = {}
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def process_tree(root: int) -> set[int]:
    """A process and its children (gunicorn's master and workers)."""
    pids = {root}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == root:
                pids.add(int(entry.name))
    return pids


class CpuMeter:
    """CPU used by one server's processes and, on PostgreSQL, by its backends (found by the
    application_name the server's database URL sets). Measured around each wrk run: unlike
    requests/s it hardly moves when other work shares the machine."""

    def __init__(self, root_pid: int, app_name: str | None, admin_url: str | None) -> None:
        self.root_pid, self.app_name, self.admin_url = root_pid, app_name, admin_url

    def _backends(self) -> set[int]:
        if self.app_name is None or self.admin_url is None:
            return set()
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [self.app_name]
            ).fetchall()
        return {int(r[0]) for r in rows}

    def snapshot(self) -> tuple[dict[int, float], dict[int, float]]:
        return cpu_seconds(process_tree(self.root_pid)), cpu_seconds(self._backends())

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds between two snapshots (a process born in between counts whole)."""
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def server_env(data_dir: Path, database_url: str) -> dict[str, str]:
    """The process environment for every callvault command of the run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLVAULT_") and k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}
    }
    env.update(
        {
            "CALLVAULT_SECRET_KEY": secrets.token_urlsafe(48),
            "CALLVAULT_DATA_DIR": str(data_dir),
            "CALLVAULT_DATABASE_URL": database_url,
            "CALLVAULT_KEYRING_FILE": str(data_dir / "keyring.json"),
            "CALLVAULT_HTTPS": "0",
            "CALLVAULT_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def run_wrk(url: str, lua: Path, seconds: int, connections: int, threads: int) -> WrkResult:
    """One bounded wrk run against 127.0.0.1."""
    assert url.startswith(f"http://{HOST}:")
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return WrkResult(**json.loads(line[len("WRK_JSON ") :]))


def measured_wrk(
    target: Target, meter: CpuMeter, lua: Path, args: argparse.Namespace, seconds: int
) -> WrkResult:
    """A wrk run with the server-side CPU it caused."""
    app0, db0 = meter.snapshot()
    res = run_wrk(target.url, lua, seconds, args.connections, args.threads)
    app1, db1 = meter.snapshot()
    res.app_cpu_s, res.db_cpu_s = CpuMeter.used(app0, app1), CpuMeter.used(db0, db1)
    return res


# ---- run inside a Django process (`python -c ...`, with the server's environment) ----------


def django_setup_project() -> None:
    """Create the project, statuses, product and API key the way the product does; print the
    key and the database version as JSON. Also creates the ceiling's plain table."""
    import django

    django.setup()
    from django.db import connection

    from benchmarks.ceiling_urls import ensure_table
    from callvault.accounts.actions import do_create_api_key, do_create_project
    from callvault.orders.actions import do_create_default_statuses, do_create_product

    project = do_create_project("Bench shop", "bench")
    do_create_default_statuses(project)
    do_create_product(project, sku="TEA", name="Tea", price="990.00")
    _, secret = do_create_api_key(project, "wrk")
    ensure_table()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version()"
            if connection.vendor == "postgresql"
            else "SELECT 'SQLite ' || sqlite_version()"
        )
        version = cursor.fetchone()[0].split(" on ")[0]
    print(json.dumps({"key": secret, "database": version}))


def django_report(key: str) -> None:
    """Rows written, and the SQL one lead and one bare insert run (in-process, for the record)."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from callvault.audit.models import AuditEvent
    from callvault.orders.models import Order

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bench_plain")
        plain = cursor.fetchone()[0]
    counts = {
        "orders": Order.objects.count(),
        "plain": plain,
        "duplicates": Order.objects.filter(duplicate_of__isnull=False).count(),
        "audit_events": AuditEvent.objects.count(),
    }
    client = Client(HTTP_HOST="127.0.0.1")
    body = json.dumps(
        {
            "phone": "+1 212 555 0142",
            "name": "Ivan Petrov",
            "items": [{"sku": "TEA", "quantity": 1}],
        }
    )
    queries: dict[str, list[str]] = {}
    for name, url, headers in (
        ("product", LEAD_PATH, {"Authorization": f"Bearer {key}"}),
        ("ceiling", BARE_PATH, {}),
    ):
        with CaptureQueriesContext(connection) as ctx:
            resp = client.post(url, body, content_type="application/json", headers=headers)
        assert resp.status_code == 201, (name, resp.status_code, resp.content[:200])
        queries[name] = [q["sql"][:160] for q in ctx.captured_queries]
    print(json.dumps({"counts": counts, "queries": queries}))


def in_django(env: dict[str, str], func: str, *args: str) -> Any:
    """Run a function of this module in a Django process with the run's settings."""
    code = f"from benchmarks.lead_intake import {func}; {func}(*{args!r})"
    out = run_checked(
        [sys.executable, "-c", code], {**env, "DJANGO_SETTINGS_MODULE": "benchmarks.ceiling"}
    )
    return json.loads(out.strip().splitlines()[-1])


# ---- the benchmark ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded warm-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="product port (the ceiling uses the next); default: any free",
    )
    parser.add_argument("--db-name", default="callvault_bench")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y --no-install-recommends wrk")
    if not 1 <= args.rounds <= 20 or not 1 <= args.duration <= 120:
        raise SystemExit("--rounds must be 1..20 and --duration 1..120 seconds")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-leads-"))
    try:
        with contextlib.ExitStack() as stack:
            if args.sqlite:
                database_url = f"sqlite:///{work / 'data' / 'bench.sqlite3'}"
            else:
                database_url = stack.enter_context(postgres_database(args.db_name))
            return bench(args, work, database_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path, database_url: str) -> int:
    from callvault.lib.fakephones import AREA_CODES

    product_port = free_port(args.port)  # checked first: fail before any setup work
    ceiling_port = free_port(product_port + 1 if args.port else 0)
    env = server_env(work / "data", database_url)
    callvault = str(bin_path("callvault"))
    run_checked([callvault, "vault", "init"], env)
    run_checked([callvault, "migrate"], env)
    info = in_django(env, "django_setup_project")
    lua = work / "lead.lua"
    lua.write_text(
        LUA.replace("__KEY__", info["key"]).replace(
            "__AREA_CODES__", ", ".join(f'"{a}"' for a in AREA_CODES)
        )
    )

    pg = database_url.startswith("postgres://")

    def env_for(name: str, settings: str | None = None) -> dict[str, str]:
        # On PostgreSQL each server names its connections, so its backends' CPU can be found.
        url = f"{database_url}?application_name=bench_{name}" if pg else database_url
        extra = {"DJANGO_SETTINGS_MODULE": settings} if settings else {}
        return {**env, "CALLVAULT_DATABASE_URL": url, **extra}

    product_server = Server(
        "product", env_for("product"), product_port, args.workers, work / "product.log"
    )
    ceiling_server = Server(
        "ceiling",
        env_for("ceiling", "benchmarks.ceiling"),
        ceiling_port,
        args.workers,
        work / "ceiling.log",
    )
    product = Target("product", f"http://{HOST}:{product_port}{LEAD_PATH}")
    ceiling = Target("ceiling", f"http://{HOST}:{ceiling_port}{BARE_PATH}")
    servers = {product.name: product_server, ceiling.name: ceiling_server}
    rounds: list[tuple[int, Target, WrkResult]] = []
    answered = 0  # product 2xx answers, warm-up included, to compare with the rows written
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_healthy()
        meters = {
            name: CpuMeter(
                server.pid, f"bench_{name}" if pg else None, database_url if pg else None
            )
            for name, server in servers.items()
        }
        for target in (product, ceiling):  # warm-up: imports, connections, caches
            warm = run_wrk(target.url, lua, args.warmup, args.connections, args.threads)
            answered += (warm.requests - warm.non2xx) if target is product else 0
            if warm.requests == 0 or warm.non2xx == warm.requests:
                log = servers[target.name].log_tail()
                raise RuntimeError(f"{target.name}: no successful request in warm-up\n{log}")
        for r in range(args.rounds):
            for target in (product, ceiling) if r % 2 == 0 else (ceiling, product):
                res = measured_wrk(target, meters[target.name], lua, args, args.duration)
                target.results.append(res)
                answered += (res.requests - res.non2xx) if target is product else 0
                rounds.append((r + 1, target, res))
                print(
                    f"  round {r + 1} {target.name:<8} {res.rps:8.0f} req/s  "
                    f"p99 {res.p99_us / 1000:6.1f} ms  CPU {res.cpu_ms:5.2f} ms/req  "
                    f"errors {res.errors}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    try:
        report: dict[str, Any] | None = in_django(env, "django_report", info["key"])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        # The figures stand without it (e.g. the code changed under a running benchmark).
        print(f"  (row counts and SQL listing unavailable: {str(exc).splitlines()[-1]})")
        report = None
    return print_results(args, info, product, ceiling, rounds, report, answered)


def print_results(
    args: argparse.Namespace,
    info: dict[str, Any],
    product: Target,
    ceiling: Target,
    rounds: list[tuple[int, Target, WrkResult]],
    report: dict[str, Any] | None,
    answered: int,
) -> int:
    print(
        f"\nlead intake: {info['database']}, gunicorn sync x{args.workers} per server, "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} "
        f"interleaved rounds, {os.cpu_count()} CPUs"
    )
    print(
        f"  {'round':<6}{'target':<9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'non-2xx':>8}{'sockerr':>8}{'app CPU':>9}{'db CPU':>8}  (CPU: ms per request)"
    )
    for r, target, res in rounds:
        sock = res.connect + res.read + res.write + res.timeout
        n = max(res.requests, 1)
        print(
            f"  {r:<6}{target.name:<9}{res.rps:8.0f}{res.p50_us / 1000:8.1f}"
            f"{res.p99_us / 1000:8.1f}{res.max_us / 1000:8.1f}{res.non2xx:8d}{sock:8d}"
            f"{1000 * res.app_cpu_s / n:9.2f}{1000 * res.db_cpu_s / n:8.2f}"
        )
    per_round = [p.rps / c.rps for p, c in zip(product.results, ceiling.results, strict=True)]
    ratio = product.rps / ceiling.rps
    print(
        f"\n  median  product {product.rps:6.0f} req/s, p99 {product.p99_ms:6.1f} ms, "
        f"CPU {product.cpu_ms:5.2f} ms/req  (POST {LEAD_PATH})"
    )
    print(
        f"  median  ceiling {ceiling.rps:6.0f} req/s, p99 {ceiling.p99_ms:6.1f} ms, "
        f"CPU {ceiling.cpu_ms:5.2f} ms/req  (POST {BARE_PATH}: JSON parse + one INSERT)"
    )
    print(
        f"  product / ceiling, requests/s: {ratio:.2f} (per round: "
        f"{', '.join(f'{x:.2f}' for x in per_round)})"
    )
    print(
        f"  product / ceiling, by server CPU per request (less sensitive to other load on "
        f"the machine): {ceiling.cpu_ms / product.cpu_ms:.2f}"
    )
    if report is not None:
        counts = report["counts"]
        print(
            f"  rows written: {counts['orders']} orders ({counts['duplicates']} flagged as "
            f"duplicates), {counts['audit_events']} audit events, {counts['plain']} plain rows; "
            f"product 2xx answers seen by wrk (warm-up included): {answered}"
        )
        for name, queries in report["queries"].items():
            print(f"  SQL statements per request, {name}: {len(queries)}")
            for q in queries:
                print(f"      {q}")
    errors = sum(res.errors for _, _, res in rounds)
    met = ratio >= TARGET_RATIO and errors == 0
    print(
        f"\ntarget: product >= {TARGET_RATIO:.0%} of ceiling: {ratio:.0%} -> "
        f"{'MET' if met else 'NOT MET'}" + (f" ({errors} failed requests)" if errors else "")
    )
    if errors:
        return 1
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
