"""The `callvault` command: one front door for running, setting up and looking after callvault."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# name -> one-line help; `--help` lists them in this order.
COMMANDS: dict[str, str] = {
    "demo": "Create demo data if the database is empty, print logins and a key, and serve",
    "serve": "Run the web server (gunicorn) on --bind, default 127.0.0.1:8000",
    "migrate": "Create or upgrade the database tables",
    "createowner": "Create a project and its owner (the password is generated and shown once)",
    "worker": "Run background tasks (the database queue, or Redis when configured)",
    "vault": "The key ring: init, status, rotate (re-seal in batches), retire KEY",
    "audit": "The audit trail: keygen, seal, checkpoint, verify, archive, verify-archive",
    "access": "Allowed networks: allow-ip PROJECT CIDR (the way back in), list, remove",
    "support": "Support accounts: create-account USERNAME, list",
    "telephony": "Calls: create-pbx, create-sip-account, kamailio-subscribers --out FILE",
    "monitoring": "The agent's server side: enrolment-code, spans, screenshot, set-policy",
    "check": "Check configuration, key ring and database (--deploy for production)",
    "manage": "Any Django management command, e.g. `callvault manage shell`",
}


def usage() -> str:
    """The command list, one line each."""
    width = max(map(len, COMMANDS))
    lines = ["usage: callvault COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, help_ in COMMANDS.items()]
    lines += [
        "",
        "`callvault COMMAND --help` shows a command's options.",
        "Configuration comes from CALLVAULT_* environment variables (see .env.example).",
    ]
    return "\n".join(lines)


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callvault.settings")
    import django

    django.setup()


def _run_command(command: str, argv: list[str]) -> None:
    """Run a Django management command under the `callvault` name."""
    from django.core.management import get_commands, load_command_class

    app = get_commands()[command]
    cmd = load_command_class(app, command) if isinstance(app, str) else app
    cmd.run_from_argv(argv)


def migrate(rest: list[str]) -> None:
    """Apply migrations and create the database cache table."""
    from django.core.management import call_command

    parser = argparse.ArgumentParser(prog="callvault migrate", description=COMMANDS["migrate"])
    parser.parse_args(rest)
    call_command("migrate", interactive=False, verbosity=1)
    call_command("createcachetable", verbosity=0)


def serve(rest: list[str]) -> None:
    """Serve with gunicorn (sync workers: the fastest here, see docs/benchmarks.md)."""
    from django.conf import settings
    from django.core.management import call_command
    from gunicorn.app.base import BaseApplication

    from callvault.lib.envconfig import env_int
    from callvault.wsgi import application

    parser = argparse.ArgumentParser(prog="callvault serve", description=COMMANDS["serve"])
    parser.add_argument("--bind", default=os.environ.get("CALLVAULT_BIND", "127.0.0.1:8000"))
    parser.add_argument("--workers", type=int, default=env_int("CALLVAULT_WEB_WORKERS", 2))
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(rest)
    call_command("collectstatic", interactive=False, verbosity=0)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", args.bind)
            self.cfg.set("workers", args.workers)
            self.cfg.set("worker_class", "sync")
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            if args.access_log:
                self.cfg.set("accesslog", "-")
                # The path without the query string: a phone search's query holds the number.
                self.cfg.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms')

        def load(self) -> object:
            return application

    print(f"callvault serving on http://{args.bind}/ (debug={settings.DEBUG})", flush=True)
    Server().run()


def worker(rest: list[str]) -> None:
    """Run the task worker for the configured backend, and enqueue housekeeping regularly."""
    from django.conf import settings

    from callvault.lib.envconfig import env_int
    from callvault.maintenance import (
        AuditSealer,
        enqueue_maintenance,
        start_scheduler,
        start_sealer,
        watch_tasks,
    )

    parser = argparse.ArgumentParser(prog="callvault worker", description=COMMANDS["worker"])
    parser.add_argument(
        "--once",
        action="store_true",
        help="enqueue housekeeping, run everything queued, then exit (for cron)",
    )
    args = parser.parse_args(rest)
    enqueue_maintenance()
    enqueue_maintenance(watch_tasks)
    if args.once:
        AuditSealer().run_once()
    else:
        start_scheduler(env_int("CALLVAULT_MAINTENANCE_INTERVAL", 3600))
        start_scheduler(env_int("CALLVAULT_WATCH_INTERVAL", 120), watch_tasks)
        start_sealer(settings.AUDIT_SEAL_INTERVAL)
    if settings.REDIS_URL:
        extra = ["--burst"] if args.once else ["--with-scheduler"]
        _run_command(
            "rqworker",
            [
                "callvault worker",
                "rqworker",
                "default",
                "--job-class",
                "django_tasks_rq.Job",
                *extra,
            ],
        )
    else:
        extra = ["--batch", "--no-startup-delay"] if args.once else []
        _run_command("db_worker", ["callvault worker", "db_worker", "--no-reload", *extra])


def demo(rest: list[str]) -> None:
    """Migrate, seed demo data once, print the logins, then serve."""
    from django.core.management import call_command

    parser = argparse.ArgumentParser(prog="callvault demo", description=COMMANDS["demo"])
    parser.add_argument("--bind", default="127.0.0.1:8000")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--no-serve", action="store_true", help="seed and print, do not serve")
    args = parser.parse_args(rest)
    migrate([])
    _ensure_audit_key()
    call_command("seed_demo", orders=args.orders)
    if not args.no_serve:
        serve(["--bind", args.bind])


def _ensure_audit_key() -> None:
    """Create the audit signing key beside the key ring if there is none yet."""
    from callvault.audit.signing import ensure_key_file, key_path

    if ensure_key_file():
        print(f"audit signing key created at {key_path()}: back it up with the key ring")


def _vault(rest: list[str]) -> None:
    """`callvault vault`; `init` also creates the audit signing key if there is none."""
    _run_command("vault", ["callvault", "vault", *rest])
    if rest[:1] == ["init"]:
        _ensure_audit_key()


HANDLERS: dict[str, Callable[[list[str]], None]] = {
    "demo": demo,
    "serve": serve,
    "migrate": migrate,
    "worker": worker,
    "createowner": lambda rest: _run_command("createowner", ["callvault", "createowner", *rest]),
    "vault": lambda rest: _vault(rest),
    "audit": lambda rest: _run_command("audit", ["callvault", "audit", *rest]),
    "access": lambda rest: _run_command("access", ["callvault", "access", *rest]),
    "support": lambda rest: _run_command("support", ["callvault", "support", *rest]),
    "telephony": lambda rest: _run_command("telephony", ["callvault", "telephony", *rest]),
    "monitoring": lambda rest: _run_command("monitoring", ["callvault", "monitoring", *rest]),
    "check": lambda rest: _run_command("preflight", ["callvault", "check", *rest]),
    "manage": lambda rest: _manage(rest),
}


def _manage(rest: list[str]) -> None:
    from django.core.management import execute_from_command_line

    execute_from_command_line(["callvault manage", *rest])


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage())
        return
    name, rest = args[0], args[1:]
    if name not in HANDLERS:
        print(f"callvault: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    _django()
    HANDLERS[name](rest)


if __name__ == "__main__":
    main()
