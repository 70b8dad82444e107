"""Counters shared across processes: parallel charges let exactly the limit through.

Each thread has its own database connection, as separate web processes would; run this on
PostgreSQL (CALLVAULT_DATABASE_URL) to prove the row lock, on SQLite for the write lock."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any

import pytest
from django.db import connection

from callvault.guard.models import QuotaKind
from callvault.guard.quotas import QuotaExceeded, charge
from callvault.guard.tests.quota_support import limit_member

THREADS = 12
LIMIT = 5


def redis_available() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("counters", ["database", "redis"])
def test_parallel_charges_let_exactly_the_limit_through(
    operator: Any, owner: Any, settings: Any, counters: str
) -> None:
    if counters == "redis":
        if not redis_available():
            if os.environ.get("CALLVAULT_E2E_STRICT") == "1":
                pytest.fail("no Redis on 127.0.0.1:6379 (CALLVAULT_E2E_STRICT=1)")
            pytest.skip("no Redis on 127.0.0.1:6379")
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:6379/{9 + os.getpid() % 6}",
                "KEY_PREFIX": uuid.uuid4().hex,  # this run's keys only
            }
        }
    limit_member(operator, QuotaKind.CARD_OPEN, LIMIT, owner)
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    failures: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait(timeout=10)
            try:
                charge(operator, QuotaKind.CARD_OPEN)
            except QuotaExceeded:
                outcomes.append("refused")
            else:
                outcomes.append("allowed")
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(outcomes) == ["allowed"] * LIMIT + ["refused"] * (THREADS - LIMIT)
