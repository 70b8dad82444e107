"""Guard test fixtures: a local webhook receiver that records what it is sent, and the clock
the quotas and the alert rules see, set to a working morning."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as day_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from django.utils import timezone as django_timezone

from callvault.accounts.models import Project
from callvault.guard import alerts, quotas


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 in a thread; every request is recorded and answered with
    `status` (200 unless a test wants the owner's endpoint to fail)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The requests once at least `count` arrived (or whatever came within `timeout`):
        deliveries may run after the commit, in another thread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.requests()


def signed_json(received: Received, secret: str) -> dict[str, Any]:
    """The JSON of a webhook POST whose signature checks out, computed here independently of
    alerts.sign: `sha256=` HMAC-SHA256(secret, "<timestamp>.<body>")."""
    timestamp = received.headers["X-Callvault-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(received.headers["X-Callvault-Signature"], f"sha256={expected}")
    assert received.method == "POST" and received.path == "/hook"
    assert received.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = json.loads(received.body)
    return body


def start_receiver() -> WebhookReceiver:
    """A receiver listening on a free port of 127.0.0.1; stop it with `stop_receiver`."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                receiver.received.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = do_PUT = _record

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads `received`, not stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(server=server)
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return receiver


def stop_receiver(receiver: WebhookReceiver) -> None:
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A local webhook endpoint for the owner's alerts (see WebhookReceiver)."""
    receiver = start_receiver()
    yield receiver
    stop_receiver(receiver)


class GuardClock:
    """The time the quotas and the alert rules see; tests move it."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


class ClockedTimezone:
    """django.utils.timezone as alerts.py sees it, with `now` from the guard clock."""

    def __init__(self, clock: GuardClock) -> None:
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now()

    def __getattr__(self, name: str) -> Any:
        return getattr(django_timezone, name)


def working_morning(project: Project, monkeypatch: pytest.MonkeyPatch) -> GuardClock:
    """Set the guard's clocks to tomorrow 10:00 on the project's clock: within the default
    working hours (08-21), at the start of a quota hour, after every event the fixtures made.
    Only the guard's windows move; the rest of callvault keeps the real time."""
    zone = ZoneInfo(project.time_zone)
    tomorrow = django_timezone.now().astimezone(zone).date() + timedelta(days=1)
    clock = GuardClock(datetime.combine(tomorrow, day_time(10, 0), tzinfo=zone))
    monkeypatch.setattr(quotas, "now", clock.now)
    monkeypatch.setattr(alerts, "timezone", ClockedTimezone(clock))
    # The counters live in the cache table, which the flush after a transactional test
    # leaves alone: start from none.
    cache.clear()
    return clock


@pytest.fixture
def clock(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardClock]:
    """The guard's clock at a working morning (see working_morning)."""
    yield working_morning(project, monkeypatch)
    cache.clear()
