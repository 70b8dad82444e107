"""The Asterisk AMI provider against the AMI wire protocol.

There is no Asterisk on this machine (Debian 12 ships none), so a small asyncio server here
speaks the protocol as Asterisk does: the "Asterisk Call Manager/<version>" banner, CRLF
"Key: Value" lines with a blank line after each message, Login answered "Authentication
accepted" (or "Authentication failed" and a closed connection), an asynchronous Originate
answered "Originate successfully queued" and later an OriginateResponse event. The client is
the real panoramisk; the test checks what reached the "PBX" and what did not reach anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallState
from callvault.telephony.providers import ami
from callvault.telephony.setup_actions import do_update_telephony_settings
from callvault.telephony.tests.call_support import (
    assert_no_digits_anywhere,
    mine,
    press_call,
    sip_account,
)

__all__ = ["mine"]

Phone = tuple[str, str]
CRLF = "\r\n"


@dataclass
class FakeAsterisk:
    """An AMI server: what it received, and how it answers."""

    username: str = "callvault"
    secret: str = "s3cret-ami"
    originate: str = "queued"  # or "error", or "silent" (never answers)
    port: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/5.0.1\r\n")
        await writer.drain()
        buffer = ""
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                buffer += chunk.decode()
                while CRLF * 2 in buffer:
                    message, buffer = buffer.split(CRLF * 2, 1)
                    self.raw.append(message)
                    if not await self.answer(parse(message), writer):
                        return
        finally:
            writer.close()

    async def answer(self, action: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        self.actions.append(action)
        name, action_id = action.get("Action", ""), action.get("ActionID", "")
        if name == "Login":
            if (action.get("Username"), action.get("Secret")) != (self.username, self.secret):
                send(writer, Response="Error", ActionID=action_id, Message="Authentication failed")
                await writer.drain()
                return False
            send(writer, Response="Success", ActionID=action_id, Message="Authentication accepted")
            send(writer, Event="FullyBooted", Privilege="system,all", Status="Fully Booted")
        elif name == "Originate" and self.originate == "queued":
            send(
                writer,
                Response="Success",
                ActionID=action_id,
                Message="Originate successfully queued",
            )
            # Asterisk reports the outcome later; it names the Exten (the number) in it.
            send(
                writer,
                Event="OriginateResponse",
                Privilege="call,all",
                ActionID=action_id,
                Response="Success",
                Channel="PJSIP/1001-00000001",
                Context=action.get("Context", ""),
                Exten=action.get("Exten", ""),
                Reason="4",
                Uniqueid="1700000000.1",
            )
        elif name == "Originate" and self.originate == "error":
            send(writer, Response="Error", ActionID=action_id, Message="Extension does not exist.")
        await writer.drain()
        return True


def parse(message: str) -> dict[str, Any]:
    """An AMI message's headers (a repeated header becomes a list, as Variable does)."""
    fields: dict[str, Any] = {}
    for line in message.split(CRLF):
        key, _, value = line.partition(": ")
        if key in fields:
            fields[key] = [*([fields[key]] if isinstance(fields[key], str) else fields[key]), value]
        elif key:
            fields[key] = value
    return fields


def send(writer: asyncio.StreamWriter, **headers: str) -> None:
    writer.write("".join(f"{k}: {v}{CRLF}" for k, v in headers.items()).encode() + CRLF.encode())


@pytest.fixture
def asterisk() -> Iterator[FakeAsterisk]:
    """The fake Asterisk on a free local port, in a thread with its own event loop."""
    fake = FakeAsterisk()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        fake.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(5)
    yield fake
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


def ami_project(project: Project, port: int, secret: str = "s3cret-ami") -> Project:  # noqa: S107
    do_update_telephony_settings(
        project,
        {
            "provider": "ami",
            "ami_host": "127.0.0.1",
            "ami_port": port,
            "ami_username": "callvault",
            "ami_context": "customers",
            "ami_channel": "PJSIP/{extension}",
        },
        secret=secret,
    )
    return project


def test_originate_rings_the_operator_then_the_customer_with_the_order_as_caller(
    asterisk: FakeAsterisk,
    project: Project,
    operator: Membership,
    mine: Order,
    phone: Phone,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ami_project(project, asterisk.port)
    sip_account(operator, "1001")
    response = press_call(operator, mine)
    page = response.content.decode()
    assert "Your phone will ring" in page and "sip:" not in page
    login, originate = asterisk.actions[0], asterisk.actions[1]
    assert (login["Action"], login["Username"], login["Events"]) == ("Login", "callvault", "off")
    call = Call.objects.get()
    assert originate["Action"] == "Originate"
    assert originate["Channel"] == "PJSIP/1001"
    assert (originate["Context"], originate["Exten"], originate["Priority"]) == (
        "customers",
        phone[1],
        "1",
    )
    assert originate["CallerID"] == f'"Order {mine.number}" <{mine.number}>'
    assert originate["Variable"] == f"CALLVAULT_CALL={call.pk}"
    assert originate["Async"] == "true"
    assert call.state == CallState.DIALING
    assert call.external_id == originate["ActionID"]
    states = AuditEvent.objects.get(action="call.state")
    assert states.changes["state"] == ["new", "dialing"]
    # The number went to the PBX, in the Originate only: not to the page, the record or a log.
    assert sum(phone[1] in raw for raw in asterisk.raw) == 1
    assert_no_digits_anywhere(phone[1], page, caplog.text)


def test_a_refused_originate_fails_the_call_in_plain_words(
    asterisk: FakeAsterisk,
    project: Project,
    operator: Membership,
    mine: Order,
    phone: Phone,
    caplog,
) -> None:
    caplog.set_level(logging.DEBUG)
    asterisk.originate = "error"
    ami_project(project, asterisk.port)
    sip_account(operator, "1001")
    page = press_call(operator, mine).content.decode()
    assert "The phone system did not take the call" in page
    call = Call.objects.get()
    assert (call.state, call.result) == (CallState.FAILED, "ami_refused")
    assert call.ended_at is not None
    assert_no_digits_anywhere(phone[1], page, caplog.text)


def test_a_wrong_secret_never_sends_the_originate(
    asterisk: FakeAsterisk, project: Project, operator: Membership, mine: Order
) -> None:
    ami_project(project, asterisk.port, secret="wrong")
    sip_account(operator, "1001")
    press_call(operator, mine)
    assert [a["Action"] for a in asterisk.actions] == ["Login"]
    assert Call.objects.get().result == "ami_login_failed"


def test_an_unreachable_pbx_fails_the_call(
    project: Project, operator: Membership, mine: Order
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ami_project(project, port)
    sip_account(operator, "1001")
    page = press_call(operator, mine).content.decode()
    assert "did not take the call" in page
    assert Call.objects.get().result == "ami_unreachable"


def test_a_pbx_that_never_answers_is_given_up(
    asterisk: FakeAsterisk,
    project: Project,
    operator: Membership,
    mine: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ami, "TIMEOUT_SECONDS", 0.5)
    asterisk.originate = "silent"
    ami_project(project, asterisk.port)
    sip_account(operator, "1001")
    press_call(operator, mine)
    assert Call.objects.get().result == "ami_unreachable"


def test_the_checklist_names_what_ami_lacks(project: Project) -> None:
    do_update_telephony_settings(project, {"provider": "ami", "ami_channel": "PJSIP/{extension}"})
    settings = project.telephony
    missing = ami.AmiProvider().missing(settings)
    assert missing == [
        "the AMI host",
        "the AMI user",
        "the AMI secret",
        "the dialplan context for customers",
    ]
