"""Alerts posted to the owner's webhook: signed JSON checked by a real local receiver,
retried on a server error, readable by a chat bot, never a secret in the logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidTag
from django.db import transaction

from callvault.accounts.models import SecurityNotice
from callvault.accounts.notices import notify_owners
from callvault.guard import alerts
from callvault.guard.models import GuardSettings


class Receiver:
    """A local HTTP server that keeps what it is sent and answers the given statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.gets: list[str] = []  # where a followed redirect would have gone
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/moved")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                receiver.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes, *, max_age: int = 300) -> bool:
    """What a receiver does: recompute the signature over timestamp + "." + body, in
    constant time, and refuse an old timestamp."""
    timestamp = headers["X-Callvault-Timestamp"]
    if abs(time.time() - int(timestamp)) > max_age:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Callvault-Signature"], f"sha256={expected.hexdigest()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.0, 0.0, 0.0))


def configure(project, url: str) -> str:
    guard = GuardSettings.objects.get(project=project)
    alerts.do_update_guard_settings(guard, webhook_url=url)
    return alerts.do_generate_webhook_secret(guard)


def test_an_alert_is_posted_signed_and_the_receiver_verifies_it(
    owner, operator, receiver, django_capture_on_commit_callbacks, settings
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://crm.example.com"]
    secret = configure(owner.project, f"{receiver.url}/hook")
    with django_capture_on_commit_callbacks(execute=True):
        notice = alerts.raise_alert(
            operator, "cards_burst", {"count": 40, "minutes": 10, "threshold": 40}
        )
    ((path, headers, body),) = receiver.requests
    assert path == "/hook"
    assert verify(secret, headers, body)
    assert not verify(secret + "x", headers, body)
    assert not verify(secret, headers, body + b" ")
    data = json.loads(body)
    assert data["project"] == "alpha"
    assert data["kind"] == "cards_burst"
    assert data["member"] == "bob"
    assert data["params"] == {"user": "bob", "count": 40, "minutes": 10, "threshold": 40}
    assert data["created_at"] == notice.created_at.isoformat()
    # The day in the project's time zone (Moscow), which is not the UTC date late in the evening.
    day = notice.created_at.astimezone(ZoneInfo("Europe/Moscow")).date().isoformat()
    assert data["timeline_url"] == (
        f"https://crm.example.com/p/alpha/audit/timeline/{operator.user_id}/?day={day}"
    )
    assert "40" in data["text"] and "bob" in data["text"]


def test_the_timeline_link_is_to_the_alerts_day_where_the_project_is(owner, operator, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://crm.example.com"]
    notice = alerts.raise_alert(operator, "cards_burst", {"count": 40, "minutes": 10})
    base = f"https://crm.example.com/p/alpha/audit/timeline/{operator.user_id}/?day="
    # 22:30 UTC on 31 December is already the new year in Moscow, but not yet in New York.
    notice.created_at = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)
    assert json.loads(alerts.webhook_body(notice))["timeline_url"] == base + "2027-01-01"
    notice.project.time_zone = "America/New_York"
    assert json.loads(alerts.webhook_body(notice))["timeline_url"] == base + "2026-12-31"


def test_the_text_is_in_the_installations_language_for_a_chat_bot(
    owner, receiver, django_capture_on_commit_callbacks, settings
):
    # A Telegram bot's sendMessage takes chat_id from the query and reads "text" in the body.
    settings.LANGUAGE_CODE = "en"
    configure(owner.project, f"{receiver.url}/bot123:abc/sendMessage?chat_id=42")
    with django_capture_on_commit_callbacks(execute=True):
        notify_owners(owner.project_id, "support_used", {"person": "Oleg", "ip": "192.0.2.1"})
    ((path, _headers, body),) = receiver.requests
    assert path == "/bot123:abc/sendMessage?chat_id=42"
    data = json.loads(body)
    assert data["text"] == "Support access of Oleg was used from 192.0.2.1."
    assert data["member"] is None
    assert data["timeline_url"] == ""


def test_a_server_error_is_retried(owner, operator, django_capture_on_commit_callbacks):
    failing = Receiver([500, 502])
    try:
        secret = configure(owner.project, failing.url)
        with django_capture_on_commit_callbacks(execute=True):
            notice = alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "23:00"})
        assert len(failing.requests) == 3
        assert all(verify(secret, h, b) for _p, h, b in failing.requests)
        assert alerts.send_webhook.call(notice.pk) is True  # a later run gets through at once
    finally:
        failing.close()


def test_a_refusal_is_not_retried_and_is_logged_without_secrets(
    owner, operator, caplog, django_capture_on_commit_callbacks
):
    refusing = Receiver([403])
    try:
        secret = configure(owner.project, f"{refusing.url}/bot999:TOKEN/sendMessage?chat_id=1")
        with (
            caplog.at_level(logging.WARNING, logger="callvault.guard.alerts"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "23:00"})
        assert len(refusing.requests) == 1
        assert "403" in caplog.text
        assert "TOKEN" not in caplog.text and secret not in caplog.text
    finally:
        refusing.close()


def test_an_unreachable_receiver_gives_up_after_the_retries(
    owner, operator, caplog, django_capture_on_commit_callbacks
):
    gone = Receiver()
    url = gone.url
    gone.close()
    configure(owner.project, url)
    with (
        caplog.at_level(logging.WARNING, logger="callvault.guard.alerts"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        notice = alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
    assert caplog.text.count("no answer") == 1 + len(alerts.RETRY_DELAYS)
    assert SecurityNotice.objects.filter(pk=notice.pk).exists()  # the page still has it


def test_only_the_projects_own_webhook_gets_its_alerts(
    owner, operator, outsider, receiver, django_capture_on_commit_callbacks
):
    configure(outsider.project, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
    assert receiver.requests == []  # alpha has no webhook; beta's is not alpha's
    with django_capture_on_commit_callbacks(execute=True):
        notify_owners(outsider.project_id, "support_used", {"person": "Eve", "ip": "192.0.2.1"})
    assert len(receiver.requests) == 1


def test_without_a_secret_the_post_is_unsigned(
    owner, operator, receiver, django_capture_on_commit_callbacks
):
    guard = GuardSettings.objects.get(project=owner.project)
    alerts.do_update_guard_settings(guard, webhook_url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
    ((_path, headers, _body),) = receiver.requests
    assert "X-Callvault-Signature" not in headers


def test_a_rolled_back_alert_is_not_posted(
    owner, operator, receiver, django_capture_on_commit_callbacks
):
    configure(owner.project, receiver.url)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
            raise RuntimeError
        assert callbacks == []  # the rollback dropped the delivery
        alerts.raise_alert(operator, "outside_hours", {"what": "y", "time": "2"})
    assert len(callbacks) == 1  # the same capture delivers a committed alert ...
    ((_path, _headers, body),) = receiver.requests  # ... and only that one
    assert json.loads(body)["params"]["what"] == "y"


def test_the_secret_is_sealed_and_bound_to_its_project(owner, outsider):
    secret = configure(owner.project, "https://example.com/hook")
    guard = GuardSettings.objects.get(project=owner.project)
    assert secret not in guard.webhook_secret_sealed
    assert guard.webhook_secret_sealed.startswith("cv1:")
    assert alerts.webhook_secret(guard) == secret
    moved = GuardSettings.objects.get(project=outsider.project)
    moved.webhook_secret_sealed = guard.webhook_secret_sealed
    with pytest.raises(InvalidTag):  # the AEAD refuses another project's data
        alerts.webhook_secret(moved)


def test_a_key_rotation_reseals_the_secret_as_a_recorded_rotation(owner, own_ring):
    from django.core.management import call_command

    from callvault.audit.models import AuditEvent
    from callvault.audit.parked import sweep_pending_changes

    secret = configure(owner.project, "https://example.com/hook")
    before = GuardSettings.objects.get(project=owner.project).webhook_secret_sealed
    call_command("vault", "rotate", "--batch", "2")
    sweep_pending_changes()
    guard = GuardSettings.objects.get(project=owner.project)
    assert guard.webhook_secret_sealed != before
    assert alerts.webhook_secret(guard) == secret
    assert AuditEvent.objects.filter(
        action="vault.rotate", object_id="guard.GuardSettings.webhook_secret_sealed"
    ).exists()
    # The re-seal is the rotation's own write, not a change from outside the application.
    assert not AuditEvent.objects.filter(action__endswith="changed_outside_app").exists()


@pytest.mark.parametrize("status", [301, 302, 303, 307])
def test_a_redirect_is_not_followed_and_is_a_logged_failure(
    owner, operator, caplog, django_capture_on_commit_callbacks, status
):
    moving = Receiver([status])
    try:
        configure(owner.project, moving.url)
        with (
            caplog.at_level(logging.WARNING, logger="callvault.guard.alerts"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            notice = alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
        assert len(moving.requests) == 1  # final, as a 4xx: not tried again
        assert moving.gets == []  # not repeated as a GET without the body
        assert f"answered {status}" in caplog.text
        moving.statuses = [status]
        assert alerts.send_webhook.call(notice.pk) is False  # not counted as delivered
    finally:
        moving.close()


def test_the_body_names_the_notice_so_a_duplicate_can_be_dropped(
    owner, operator, receiver, django_capture_on_commit_callbacks
):
    configure(owner.project, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        notice = alerts.raise_alert(operator, "outside_hours", {"what": "x", "time": "1"})
    assert alerts.send_webhook.call(notice.pk) is True  # delivered twice ...
    bodies = [json.loads(body) for _path, _headers, body in receiver.requests]
    assert [b["id"] for b in bodies] == [notice.pk, notice.pk]  # ... with one id
