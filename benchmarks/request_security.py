"""What "who may enter" and the leak controls cost a page: the product against the same pages
without them, same process, interleaved rounds.

    .venv/bin/python benchmarks/request_security.py [--vendor sqlite|postgresql] [--rounds 400]

The product stack adds, on every request of a logged-in person: django-csp's header, the
OTP middleware, the session guard (revoked, expired, moved or idle sessions; it reads the
database at most once a minute), the allowed-networks check (one query), the support scope,
the second-factor gate (no query once passed or once cleared for the minute), the password
age (at most every five minutes), the suspension check, and django-axes. The baseline is
the same stack without them (as before that work). The leak controls also count every card
open against the member's quota and feed the alert rules (`guard.quotas.charge`, which calls
`guard.alerts.observe`): the "baseline" side runs with that call replaced by a no-op, and a
third side, "no quota", keeps the whole stack but skips only the charge, to show the two
costs apart.

Both sides request the same two pages as the same operator, whose project has one allowed
network containing the client's address (so the allow-list really runs): "My orders" and an
order card (the card also records its `order.view` event and renews the hold, on both sides).
Each round requests both pages on both sides, alternating which side goes first. The script
prints p50/p95 per page and side, the queries per request, and the ratio product/baseline.
Debug is off; the SQLite database lives in a temporary folder, PostgreSQL in a throw-away
database `callvault_reqbench` on 127.0.0.1:5432. With `CALLVAULT_REDIS_URL` the cache is that
Redis database, which the run empties at the end: give it a spare one (e.g. `/14`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.plumbing import postgres_database  # noqa: E402

DB_NAME = "callvault_reqbench"
# The middleware the login-security work added (settings.MIDDLEWARE keeps the order).
ADDED = {
    "csp.middleware.CSPMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "callvault.accounts.sessions.SessionGuardMiddleware",
    "callvault.accounts.allowlist.AllowListMiddleware",
    "callvault.accounts.support.SupportAccessMiddleware",
    "callvault.accounts.twofactor.SecondFactorMiddleware",
    "callvault.guard.middleware.SuspensionMiddleware",
    "axes.middleware.AxesMiddleware",
}


def setup_django(database_url: str | None) -> None:
    data = tempfile.mkdtemp(prefix="callvault-reqbench-")
    os.environ.update(
        {
            "CALLVAULT_DATA_DIR": data,
            "CALLVAULT_TESTING": "1",  # a generated key ring in the data folder
            "CALLVAULT_HTTPS": "0",
            "CALLVAULT_SECRET_KEY": "bench-" + "x" * 60,
            "DJANGO_SETTINGS_MODULE": "callvault.settings",
        }
    )
    if database_url:
        os.environ["CALLVAULT_DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)


def seed() -> tuple[Any, list[int]]:
    """A project, one operator with 20 assigned orders, the office network."""
    from callvault.accounts.actions import do_add_member, do_create_project, do_create_user
    from callvault.accounts.allowlist import do_add_network
    from callvault.accounts.models import Role
    from callvault.audit.context import system_run
    from callvault.guard.models import QuotaKind
    from callvault.guard.quotas import do_set_quota
    from callvault.lib.fakephones import fake_phone
    from callvault.orders.actions import do_create_default_statuses
    from callvault.orders.intake import Lead, do_create_order
    from callvault.orders.models import Order

    rng = random.Random(7)
    with system_run("reqbench"):
        project = do_create_project("Bench", "bench")
        do_create_default_statuses(project)
        user = do_create_user("olga", "x" * 20, validate=False)
        member = do_add_member(project, user, Role.OPERATOR)
        do_add_network(project, "127.0.0.0/8", "Office")
        ids = []
        for _ in range(20):
            result = do_create_order(project, Lead(phone=fake_phone(rng)[0], name="Ivan"))
            ids.append(result.order.pk)
        Order.objects.filter(pk__in=ids).update(assigned_to=user)
        # The quota is counted (that is the cost measured) but never reached in the run.
        owner = do_add_member(project, do_create_user("alice", "x" * 20, validate=False), "owner")
        do_set_quota(project, QuotaKind.CARD_OPEN, 10**6, membership=member, acting=owner)
    return member, ids


def client_for(member: Any, middleware: list[str]) -> Any:
    """A logged-in test client whose handler was built with this middleware list."""
    from django.test import Client, override_settings

    client = Client(REMOTE_ADDR="127.0.0.1", HTTP_HOST="localhost")
    client.force_login(member.user)
    with override_settings(MIDDLEWARE=middleware):
        client.get("/healthz")  # the handler loads its middleware chain now, once
    return client


@contextlib.contextmanager
def charging(on: bool) -> Iterator[None]:
    """Quota charging as the product does it, or replaced by a no-op for this request."""
    from callvault.guard import quotas

    if on:
        yield
        return
    real = quotas.charge
    quotas.charge = lambda *args, **kwargs: None
    try:
        yield
    finally:
        quotas.charge = real


def timed(fn: Callable[[str], Any], url: str) -> float:
    start = time.perf_counter()
    fn(url)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vendor", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()

    if args.vendor == "postgresql":
        with postgres_database(DB_NAME) as url:
            run(url, args.rounds)
    else:
        run(None, args.rounds)


def run(database_url: str | None, rounds: int) -> None:
    setup_django(database_url)
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    member, ids = seed()
    product_stack = list(settings.MIDDLEWARE)
    baseline_stack = [m for m in product_stack if m not in ADDED]
    sides = {
        "product": client_for(member, product_stack),
        "no quota": client_for(member, product_stack),
        "baseline": client_for(member, baseline_stack),
    }
    uncharged = {"no quota", "baseline"}
    pages = {
        "my orders": lambda i: "/p/bench/orders/mine/",
        "order card": lambda i: f"/p/bench/orders/{ids[i % len(ids)]}/",
    }
    samples: dict[tuple[str, str], list[float]] = {
        (page, side): [] for page in pages for side in sides
    }
    queries: dict[tuple[str, str], int] = {}
    for page, url in pages.items():  # warm up, and count the queries of a steady request
        for side, client in sides.items():
            with charging(side not in uncharged):
                for i in range(3):
                    assert client.get(url(i)).status_code == 200, (page, side)
                with CaptureQueriesContext(connection) as captured:
                    client.get(url(3))
            queries[(page, side)] = len(captured)
    order = list(sides)
    for i in range(rounds):
        for page, url in pages.items():
            target = url(i)
            for side in order if i % 2 == 0 else reversed(order):
                with charging(side not in uncharged):
                    samples[(page, side)].append(timed(sides[side].get, target))
    for side, client in sides.items():  # every timed request was a page, not a refusal
        assert client.get(pages["order card"](0)).status_code == 200, side
    if settings.REDIS_URL:
        # The counters the run left in the Redis database it was given (use a spare one).
        from django.core.cache import cache

        cache.clear()

    vendor = connection.vendor
    print(f"callvault request cost of login security and leak controls ({vendor}, {rounds} rounds)")
    print(f"{'page':<12} {'side':<9} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for page in pages:
        for side in sides:
            values = sorted(samples[(page, side)])
            p50 = statistics.median(values) * 1000
            p95 = values[int(len(values) * 0.95) - 1] * 1000
            print(f"{page:<12} {side:<9} {p50:8.2f} {p95:8.2f} {queries[(page, side)]:8d}")
        base = statistics.median(samples[(page, "baseline")])
        for side in ("product", "no quota"):
            ratio = statistics.median(samples[(page, side)]) / base
            print(f"{page:<12} ratio {side}/baseline (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
