"""The cloud PBX callback against a real HTTP server on a local port: the filled body template,
the signature, the headers, no redirects, and failures in plain words."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallState
from callvault.telephony.providers import cloud
from callvault.telephony.setup_actions import do_update_telephony_settings
from callvault.telephony.tests.call_support import (
    assert_no_digits_anywhere,
    mine,
    press_call,
    sip_account,
)

__all__ = ["mine"]

Phone = tuple[str, str]
SECRET = "cloud-signing-secret"


@dataclass
class CloudPbx:
    """What the hosted PBX received, and how it answers."""

    port: int = 0
    status: int = 200
    answer: bytes = b'{"call_id": "cp-77"}'
    location: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/callback?key=abc") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def cloud_pbx(settings: Any) -> Iterator[CloudPbx]:
    """A hosted PBX on 127.0.0.1, over plain HTTP: the host is on the callback's allow-list
    (without it, an http or private address is refused: test_cloud_addresses.py)."""
    settings.TELEPHONY_CLOUD_HOSTS = ["127.0.0.1"]
    pbx = CloudPbx()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            pbx.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(pbx.status)
            if pbx.location:
                self.send_header("Location", pbx.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(pbx.answer)))
            self.end_headers()
            self.wfile.write(pbx.answer)

        def do_GET(self) -> None:
            pbx.requests.append({"path": self.path, "method": "GET"})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pbx.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield pbx
    server.shutdown()
    server.server_close()


def cloud_project(project: Project, url: str, template: str = "", secret: str = SECRET) -> None:
    do_update_telephony_settings(
        project,
        {
            "provider": "cloud",
            "cloud_url": url,
            "cloud_headers": {"X-Api-Key": "pbx-api-key"},
            "cloud_body_template": template,
        },
        secret=secret,
    )


TEMPLATE = json.dumps(
    {
        "from": {"extension": "{operator_extension}"},
        "to": "{number}",
        "note": "order {order_number}, call {call_id}",
        "record": True,
    }
)


def test_the_callback_posts_the_filled_template_signed(
    cloud_pbx: CloudPbx,
    project: Project,
    operator: Membership,
    mine: Order,
    phone: Phone,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud_project(project, cloud_pbx.url(), TEMPLATE)
    sip_account(operator, "1001")
    page = press_call(operator, mine).content.decode()
    assert "Your phone will ring" in page
    (request,) = cloud_pbx.requests
    call = Call.objects.get()
    assert request["path"] == "/callback?key=abc"
    assert json.loads(request["body"]) == {
        "from": {"extension": "1001"},
        "to": phone[1],
        "note": f"order {mine.number}, call {call.pk}",
        "record": True,
    }
    headers = request["headers"]
    assert headers["X-Api-Key"] == "pbx-api-key"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    stamp = headers["X-Callvault-Timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + request["body"], hashlib.sha256)
    assert headers["X-Callvault-Signature"] == f"sha256={mac.hexdigest()}"
    assert (call.state, call.external_id) == (CallState.DIALING, "cp-77")
    assert_no_digits_anywhere(phone[1], page, caplog.text)


def test_a_placeholder_value_cannot_change_the_json(
    cloud_pbx: CloudPbx, project: Project, operator: Membership, mine: Order
) -> None:
    cloud_project(project, cloud_pbx.url(), '{"x": "{order_number}"}')
    sip_account(operator, "1001")
    Order.objects.filter(pk=mine.pk).update(number=42)
    press_call(operator, mine)
    assert json.loads(cloud_pbx.requests[0]["body"]) == {"x": "42"}
    assert cloud.fill({"a": ['"}{number}']}, {"{number}": '"'}) == {"a": ['"}"']}


def test_the_default_template_carries_all_four_values(
    cloud_pbx: CloudPbx, project: Project, operator: Membership, mine: Order, phone: Phone
) -> None:
    cloud_project(project, cloud_pbx.url())
    sip_account(operator, "1001")
    press_call(operator, mine)
    body = json.loads(cloud_pbx.requests[0]["body"])
    assert body == {
        "call_id": str(Call.objects.get().pk),
        "order": str(mine.number),
        "from": "1001",
        "to": phone[1],
    }


def test_a_redirect_is_not_followed_and_fails_the_call(
    cloud_pbx: CloudPbx, project: Project, operator: Membership, mine: Order
) -> None:
    cloud_pbx.status, cloud_pbx.location = 302, "/elsewhere"
    cloud_project(project, cloud_pbx.url())
    sip_account(operator, "1001")
    page = press_call(operator, mine).content.decode()
    assert "did not take the call" in page
    assert [r["path"] for r in cloud_pbx.requests] == ["/callback?key=abc"]
    call = Call.objects.get()
    assert (call.state, call.result) == (CallState.FAILED, "http 302")


def test_an_error_answer_fails_the_call_without_recording_the_body(
    cloud_pbx: CloudPbx, project: Project, operator: Membership, mine: Order, phone: Phone
) -> None:
    cloud_pbx.status = 500
    cloud_pbx.answer = json.dumps({"error": f"cannot reach {phone[1]}"}).encode()
    cloud_project(project, cloud_pbx.url())
    sip_account(operator, "1001")
    page = press_call(operator, mine).content.decode()
    assert Call.objects.get().result == "http 500"
    assert_no_digits_anywhere(phone[1], page)


def test_without_a_secret_the_request_is_not_signed(
    cloud_pbx: CloudPbx, project: Project, operator: Membership, mine: Order
) -> None:
    cloud_project(project, cloud_pbx.url(), secret="")
    sip_account(operator, "1001")
    press_call(operator, mine)
    assert "X-Callvault-Signature" not in cloud_pbx.requests[0]["headers"]


def test_the_settings_record_the_address_by_host_and_the_headers_by_name(
    project: Project, cloud_pbx: CloudPbx
) -> None:
    cloud_project(project, cloud_pbx.url())
    do_update_telephony_settings(
        project,
        {"cloud_url": cloud_pbx.url("/other?key=zzz"), "cloud_headers": {"X-Api-Key": "new"}},
    )
    last = AuditEvent.objects.filter(action="telephony_settings.update").last()
    assert last is not None
    assert last.changes == {"cloud_url": "changed", "cloud_headers": "changed"}
    text = json.dumps([e.changes for e in AuditEvent.objects.all()])
    for secret in ("abc", "zzz", "pbx-api-key", SECRET):
        assert secret not in text


# --- where the number may be sent: checked again when it is sent --------------------------


def test_a_host_that_resolves_to_a_private_address_is_refused_when_sent(
    cloud_pbx: CloudPbx, settings: Any, project: Project, operator: Membership, mine: Order
) -> None:
    # https to a name (the settings cannot know its addresses); it resolves to the loopback.
    cloud_project(project, cloud_pbx.url().replace("http://127.0.0.1", "https://localhost"))
    settings.TELEPHONY_CLOUD_HOSTS = []
    sip_account(operator, "1001")
    assert "did not take the call" in press_call(operator, mine).content.decode()
    assert cloud_pbx.requests == []
    assert (Call.objects.get().state, Call.objects.get().result) == (
        CallState.FAILED,
        "address_refused",
    )


def test_a_plain_http_address_stored_before_the_check_is_refused_when_sent(
    cloud_pbx: CloudPbx, settings: Any, project: Project, operator: Membership, mine: Order
) -> None:
    cloud_project(project, cloud_pbx.url())
    settings.TELEPHONY_CLOUD_HOSTS = []
    sip_account(operator, "1001")
    press_call(operator, mine)
    assert cloud_pbx.requests == [] and Call.objects.get().result == "address_refused"


def test_the_request_goes_to_the_address_that_was_checked(
    cloud_pbx: CloudPbx,
    settings: Any,
    project: Project,
    operator: Membership,
    mine: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name is looked up once, by the check: "pbx.test" answers only the first lookup
    (a DNS answer that changes after the check), so a connection that looked the name up
    again would fail."""
    import socket

    real = socket.getaddrinfo
    asked: list[str] = []

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        if host == "pbx.test":
            if asked.count("pbx.test") > 1:
                raise socket.gaierror("pbx.test answers once")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    settings.TELEPHONY_CLOUD_HOSTS = ["pbx.test"]
    cloud_project(project, f"http://pbx.test:{cloud_pbx.port}/callback")
    sip_account(operator, "1001")
    assert "Your phone will ring" in press_call(operator, mine).content.decode()
    assert asked.count("pbx.test") == 1
    assert cloud_pbx.requests[0]["headers"]["Host"] == f"pbx.test:{cloud_pbx.port}"


def test_a_pbx_that_trickles_its_answer_is_given_up_at_the_deadline(
    settings: Any,
    project: Project,
    operator: Membership,
    mine: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    monkeypatch.setattr(cloud, "TIMEOUT_SECONDS", 1.0)
    settings.TELEPHONY_CLOUD_HOSTS = ["127.0.0.1"]
    with socket.socket() as slow:
        slow.bind(("127.0.0.1", 0))
        slow.listen()
        port = slow.getsockname()[1]

        def trickle() -> None:
            conn, _ = slow.accept()
            with conn:
                conn.recv(65536)
                try:
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: yes\r\n\r\n":
                        conn.sendall(bytes([byte]))
                        time.sleep(0.2)
                except OSError:
                    pass

        threading.Thread(target=trickle, daemon=True).start()
        cloud_project(project, f"http://127.0.0.1:{port}/callback")
        sip_account(operator, "1001")
        started = time.monotonic()
        press_call(operator, mine)
        assert time.monotonic() - started < 4  # the answer drips for 6 s
    assert Call.objects.get().result == "timeout"
