"""Calls without numbers through real SIP components: the operator's softphone (SIPp) dials a
one-time token at the reference Kamailio (deploy/kamailio/kamailio.cfg), which asks callvault
(the live server) for the number and calls a carrier (SIPp) that echoes the number back
wherever it can. The operator's own message trace and a packet capture of the operator's port
must hold the number in none of its forms, in every outcome, while the carrier receives it.

The proxy also reports how each call went to callvault (POST /pbx/v1/events, by the token the
call dialled), from a process of its own: the Call ends up in the state the SIP exchange says,
with its times and talk time, and a refused call reports nothing.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from callvault.audit.models import ActorKind, AuditEvent
from callvault.lib.fakephones import fake_phone
from callvault.telephony.models import FINAL_STATES, Call, CallState, CallToken
from tests.e2e.sip.conftest import Dialled, SipLab, SipWorld
from tests.e2e.sip.sipkit import leaks

pytestmark = pytest.mark.django_db(transaction=True)


def assert_hidden(world: SipWorld, dialled: Dialled) -> None:
    """Neither what the operator's softphone logged nor what crossed its port carries the
    number; and the capture is not empty, or that would prove nothing."""
    assert dialled.captured, "the capture of the operator's port is empty"
    assert leaks(world.e164, dialled.operator_text()) == []
    assert leaks(world.e164, dialled.capture_text()) == []


def assert_carrier_got_the_number(world: SipWorld, dialled: Dialled) -> None:
    """The carrier was asked for the number in the Request-URI, and echoed it back."""
    text = dialled.carrier_text()
    assert re.search(rf"^INVITE sip:{re.escape(world.e164)}@", text, re.M), text[:2000]
    # What it sent back names the number many times over: the proxy had work to do.
    sent = text.split("message sent", 1)[-1]
    assert sent.count(world.e164) + sent.count(world.e164[1:]) >= 5


def assert_operator_ok(dialled: Dialled) -> None:
    assert dialled.operator.process.returncode == 0, dialled.operator.report()


# How long callvault may take to hear the end of a call: the proxy posts its events from a
# timer process that runs every 100 ms, one post at a time.
EVENTS_WITHIN_S = 5.0
# A talk time that comes out as at least one whole second.
TALK_MS = 1100


def settled() -> Call:
    """The (only) call, once callvault has heard how it ended, or as it is after
    EVENTS_WITHIN_S."""
    deadline = time.monotonic() + EVENTS_WITHIN_S
    while True:
        call = Call.objects.get()
        if call.state in FINAL_STATES or time.monotonic() > deadline:
            return call
        time.sleep(0.05)


def reported(call: Call) -> list[str]:
    """The states the PBX's events moved the call through, in order, from the audit trail;
    every one recorded as the PBX's doing and free of the number."""
    events = list(
        AuditEvent.objects.filter(action="call.state", object_id=str(call.pk)).order_by("pk")
    )
    assert all(event.actor_kind == ActorKind.PBX for event in events)
    return [event.changes["state"][1] for event in events if "state" in event.changes]


def assert_no_event_posted(world: SipWorld, lab: SipLab, *, before: int = 0) -> None:
    """The attempt reported nothing: no call changed state in callvault, and the proxy
    logged no post that callvault refused (one for a made-up token would be a 404). The
    poster runs every 100 ms; an event queued by the attempt would be in by now."""
    time.sleep(0.5)
    assert AuditEvent.objects.filter(action="call.state").count() == before
    assert "call event" not in lab.kamailio.log_text()


def assert_refused_quietly(world: SipWorld, dialled: Dialled) -> None:
    """The operator got the neutral refusal and the carrier heard nothing."""
    assert_operator_ok(dialled)
    assert dialled.final_status() == "SIP/2.0 403 Forbidden"
    assert dialled.silent_carrier == []
    assert_hidden(world, dialled)


def bob_is_refused(world: SipWorld, lab: SipLab, dialled_text: str) -> Dialled:
    """Bob's softphone dials `dialled_text` and gets the proxy's 403; no carrier is called."""
    return lab.dial(
        dialled_text,
        operator="operator_rejected",
        carrier=None,
        account=world.bob_sip,
        password=world.bob_password,
        expect=403,
    )


def refusal_reason() -> str:
    """Why callvault refused the (only) token lookup, as its audit event says."""
    return str(AuditEvent.objects.filter(action="call.token_refused").get().extra["reason"])


def test_an_answered_call_reaches_the_carrier_and_never_shows_the_number(
    sip_world: SipWorld, sip_lab: SipLab
) -> None:
    token = sip_world.issue_token()
    dialled = sip_lab.dial(
        token, account=sip_world.bob_sip, password=sip_world.bob_password, talk_ms=TALK_MS
    )

    assert_operator_ok(dialled)
    assert dialled.carrier is not None
    assert dialled.carrier.process.returncode == 0, dialled.carrier.report()
    assert dialled.final_status() == "SIP/2.0 200 OK"
    assert_carrier_got_the_number(sip_world, dialled)
    assert_hidden(sip_world, dialled)
    # The operator saw only the proxy: no carrier Contact, no identity headers, a clean SDP.
    answer = next(r for r in dialled.operator.received() if r.startswith("SIP/2.0 200 OK"))
    assert re.search(r"^Contact: <sip:atpsh-[^@]+@127\.0\.0\.1:\d+>$", answer, re.M), answer
    for header in ("P-Asserted-Identity", "Remote-Party-ID", "History-Info", "Diversion"):
        assert f"\n{header}:" not in answer
    assert "\no=- 53655765 2353687637 IN IP4" in answer and "\ns=-\n" in answer
    # The carrier's SIP-I answer (multipart: SDP and ISUP) arrives as its SDP alone, with
    # only the lines media needs; the 180's text/plain body is gone; no display names.
    assert re.search(r"^Content-Type: application/sdp$", answer, re.M), answer
    assert "\na=rtpmap:0 PCMU/8000\n" in answer and "\na=sendrecv" in answer
    for gone in ("multipart", "isup", "IAM", "a=label", "a=tool", "\ni=", "\np="):
        assert gone not in answer, gone
    ringing = next(r for r in dialled.operator.received() if r.startswith("SIP/2.0 180"))
    assert "Content-Type" not in ringing and re.search(r"^Content-Length: +0$", ringing, re.M)
    for reply in (ringing, answer):
        assert re.search(r"^To: <sip:ct-[0-9a-f]{32}@", reply, re.M), reply
    # callvault spent the token on this call, and the proxy's log holds no number either.
    call = settled()
    assert call.order == sip_world.order
    assert CallToken.objects.get(call=call).used_at is not None
    assert leaks(sip_world.e164, sip_lab.kamailio.log_text()) == []
    # The proxy told callvault how it went: it rang, was answered, and the operator hung up.
    assert call.state == CallState.ENDED
    assert reported(call) == ["ringing", "answered", "ended"]
    assert call.answered_at is not None and call.ended_at is not None
    assert call.created_at < call.answered_at < call.ended_at
    assert call.duration_seconds is not None and call.duration_seconds >= 1
    assert call.result == "operator"


def test_the_customer_hangs_up_and_the_bye_carries_no_number(
    sip_world: SipWorld, sip_lab: SipLab
) -> None:
    token = sip_world.issue_token()
    dialled = sip_lab.dial(
        token,
        operator="operator_remote_bye",
        carrier="carrier_hangup",
        account=sip_world.bob_sip,
        password=sip_world.bob_password,
        talk_ms=TALK_MS,
    )

    assert_operator_ok(dialled)
    assert dialled.carrier is not None
    assert dialled.carrier.process.returncode == 0, dialled.carrier.report()
    bye = next(r for r in dialled.operator.received() if r.startswith("BYE "))
    # No display names and no body: the carrier's text/plain "... hung up" stays behind.
    assert re.search(r"^From: <sip:", bye, re.M) and re.search(r"^To: <sip:", bye, re.M), bye
    assert "Content-Type" not in bye
    assert_carrier_got_the_number(sip_world, dialled)
    assert_hidden(sip_world, dialled)
    call = settled()
    assert call.state == CallState.ENDED
    assert reported(call) == ["ringing", "answered", "ended"]
    assert call.duration_seconds is not None and call.duration_seconds >= 1
    assert call.result == "customer"


def test_a_busy_customer_gives_a_neutral_busy(sip_world: SipWorld, sip_lab: SipLab) -> None:
    token = sip_world.issue_token()
    dialled = sip_lab.dial(
        token,
        operator="operator_rejected",
        carrier="carrier_busy",
        account=sip_world.bob_sip,
        password=sip_world.bob_password,
        expect=486,
    )

    assert_operator_ok(dialled)
    # The carrier's reason phrase, Warning, Reason and Retry-After are not relayed.
    assert dialled.final_status() == "SIP/2.0 486 Busy Here"
    busy = next(r for r in dialled.operator.received() if r.startswith("SIP/2.0 486"))
    for header in ("Warning", "Reason", "Retry-After", "Contact", "P-Asserted-Identity"):
        assert f"\n{header}:" not in busy
    assert_carrier_got_the_number(sip_world, dialled)
    assert_hidden(sip_world, dialled)
    call = settled()
    assert call.state == CallState.BUSY
    assert reported(call) == ["busy"]
    assert call.result == "486"  # the status code, never the carrier's reason text
    assert call.answered_at is None and call.ended_at is not None


@pytest.mark.parametrize(("status", "state"), [(480, CallState.NO_ANSWER), (503, "failed")])
def test_a_call_the_carrier_fails_is_reported_without_its_reason(
    sip_world: SipWorld, sip_lab: SipLab, status: int, state: str
) -> None:
    token = sip_world.issue_token()
    dialled = sip_lab.dial(
        token,
        operator="operator_rejected",
        carrier="carrier_refuses",
        account=sip_world.bob_sip,
        password=sip_world.bob_password,
        expect=480,
        carrier_status=status,
    )

    assert_operator_ok(dialled)
    # Whatever the carrier said, the operator hears the neutral 480.
    assert dialled.final_status() == "SIP/2.0 480 Temporarily Unavailable"
    assert_carrier_got_the_number(sip_world, dialled)
    assert_hidden(sip_world, dialled)
    call = settled()
    assert call.state == state
    assert reported(call) == ["ringing", state]
    assert call.result == str(status)


def test_the_operator_cancels_while_it_rings(sip_world: SipWorld, sip_lab: SipLab) -> None:
    token = sip_world.issue_token()
    dialled = sip_lab.dial(
        token,
        operator="operator_cancel",
        carrier="carrier_ringing",
        account=sip_world.bob_sip,
        password=sip_world.bob_password,
    )

    assert_operator_ok(dialled)
    assert dialled.carrier is not None
    assert dialled.carrier.process.returncode == 0, dialled.carrier.report()
    assert dialled.final_status() == "SIP/2.0 487 Request Terminated"
    assert re.search(r"^CANCEL sip:\+", dialled.carrier_text(), re.M)
    assert_carrier_got_the_number(sip_world, dialled)
    assert_hidden(sip_world, dialled)
    call = settled()
    assert call.state == CallState.CANCELLED
    assert reported(call) == ["ringing", "cancelled"]
    assert call.result == "487"
    assert call.answered_at is None


def forged_in_dialog(method: str, target: str, proxy_port: int, own: int, extra: str) -> str:
    """A request that looks like it belongs to a call (a made-up To-tag, a Route naming the
    proxy) and asks to go straight to the carrier, without credentials or token."""
    tag = secrets.token_hex(6)
    return (
        f"{method} {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{own};rport;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
        "Max-Forwards: 70\r\n"
        f"Route: <sip:127.0.0.1:{proxy_port};lr>\r\n"
        f"From: <sip:intruder@127.0.0.1>;tag={tag}\r\n"
        f"To: <{target}>;tag=made-up-{secrets.token_hex(4)}\r\n"
        f"Call-ID: {secrets.token_hex(10)}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:intruder@127.0.0.1:{own}>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("INVITE", ""),
        # topos' own marker, forged: it must not pass for a call topos mapped back.
        ("INVITE", "P-SR-XUID: atpsh-1-1-1\r\n"),
        ("BYE", ""),
        ("BYE", "P-SR-XUID: atpsh-1-1-1\r\n"),
        ("MESSAGE", ""),
    ],
)
def test_a_request_faking_a_call_never_reaches_the_carrier(
    sip_world: SipWorld, sip_lab: SipLab, method: str, extra: str
) -> None:
    """Toll fraud through loose routing: an unauthenticated 'in-dialog' request for a call
    the proxy never placed is answered 404 here, and the carrier hears nothing."""
    number = fake_phone()[1]
    target = f"sip:{number}@127.0.0.1:{sip_lab.carrier_port}"
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as carrier,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder,
    ):
        carrier.bind(("127.0.0.1", sip_lab.carrier_port))
        carrier.settimeout(1.0)
        intruder.bind(("127.0.0.1", 0))
        intruder.settimeout(3.0)
        own = intruder.getsockname()[1]
        request = forged_in_dialog(method, target, sip_lab.kamailio.port, own, extra)
        intruder.sendto(request.encode(), ("127.0.0.1", sip_lab.kamailio.port))
        answer = intruder.recv(65535).decode(errors="replace")
        with pytest.raises(TimeoutError):
            heard = carrier.recv(65535)
            pytest.fail(f"the carrier received: {heard[:300]!r}")
    assert answer.startswith("SIP/2.0 404 "), answer[:300]
    assert_no_event_posted(sip_world, sip_lab)


def test_a_used_token_is_refused(sip_world: SipWorld, sip_lab: SipLab) -> None:
    token = sip_world.issue_token()
    first = sip_lab.dial(token, account=sip_world.bob_sip, password=sip_world.bob_password)
    assert first.final_status() == "SIP/2.0 200 OK"
    assert settled().state == CallState.ENDED

    again = bob_is_refused(sip_world, sip_lab, token)

    assert_refused_quietly(sip_world, again)
    assert refusal_reason() == "used"
    # The refused second attempt told callvault nothing about the call the token made.
    assert_no_event_posted(sip_world, sip_lab, before=3)


def test_an_expired_token_is_refused(sip_world: SipWorld, sip_lab: SipLab) -> None:
    token = sip_world.issue_token()
    # The operator dialled too late: the token's minute has passed.
    CallToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    dialled = bob_is_refused(sip_world, sip_lab, token)

    assert_refused_quietly(sip_world, dialled)
    assert refusal_reason() == "expired"
    assert_no_event_posted(sip_world, sip_lab)
    assert Call.objects.get().state == CallState.NEW


def test_another_operators_token_is_refused_and_stays_theirs(
    sip_world: SipWorld, sip_lab: SipLab
) -> None:
    olgas_token = sip_world.issue_token(sip_world.olga)

    dialled = bob_is_refused(sip_world, sip_lab, olgas_token)

    assert_refused_quietly(sip_world, dialled)
    assert refusal_reason() == "other_operator"
    assert CallToken.objects.get().used_at is None
    assert_no_event_posted(sip_world, sip_lab)


@pytest.mark.parametrize("what", ["e164", "digits", "unknown token", "short token"])
def test_anything_but_a_valid_token_is_refused(
    sip_world: SipWorld, sip_lab: SipLab, what: str
) -> None:
    # The operator types a number (another customer's, say) or makes a token up. The fake
    # numbers share their 555-01xx tail, so pick one the leak check cannot mistake for ours.
    other = fake_phone()[1]
    while leaks(sip_world.e164, other):
        other = fake_phone()[1]
    dialled_text = {
        "e164": other,
        "digits": other.lstrip("+"),
        "unknown token": "ct-" + "0f" * 16,
        "short token": "ct-0f0f",
    }[what]

    dialled = bob_is_refused(sip_world, sip_lab, dialled_text)

    assert_refused_quietly(sip_world, dialled)
    # Only a well-formed token is worth asking callvault about.
    asked = AuditEvent.objects.filter(action="call.token_refused").count()
    assert asked == (1 if what == "unknown token" else 0)
    assert_no_event_posted(sip_world, sip_lab)


def test_an_unauthenticated_invite_is_challenged_and_does_not_spend_the_token(
    sip_world: SipWorld, sip_lab: SipLab
) -> None:
    token = sip_world.issue_token()

    dialled = sip_lab.dial(
        token, operator="operator_noauth", carrier=None, account=sip_world.bob_sip, password=None
    )

    assert_operator_ok(dialled)
    assert dialled.final_status() == "SIP/2.0 407 Proxy Authentication Required"
    assert dialled.silent_carrier == []
    assert_hidden(sip_world, dialled)
    assert CallToken.objects.get().used_at is None
    assert not AuditEvent.objects.filter(action__in=["call.dial", "call.token_refused"]).exists()
    # The same token still works once the softphone authenticates.
    answered = sip_lab.dial(token, account=sip_world.bob_sip, password=sip_world.bob_password)
    assert answered.final_status() == "SIP/2.0 200 OK"
    assert_hidden(sip_world, answered)


def test_a_wrong_password_is_refused_before_any_lookup(
    sip_world: SipWorld, sip_lab: SipLab
) -> None:
    token = sip_world.issue_token()

    dialled = sip_lab.dial(
        token,
        operator="operator_rejected",
        carrier=None,
        account=sip_world.bob_sip,
        password=sip_world.olga_password,
        expect=407,
    )

    assert_operator_ok(dialled)
    assert dialled.silent_carrier == []
    assert CallToken.objects.get().used_at is None


def test_a_proxy_with_the_wrong_secret_gets_nothing(
    sip_world: SipWorld, sip_lab_factory: Callable[..., SipLab]
) -> None:
    prefix = sip_world.pbx.prefix
    lab = sip_lab_factory(secret=f"cvp_{prefix}_{'x' * 43}")
    token = sip_world.issue_token()

    dialled = lab.dial(
        token,
        operator="operator_rejected",
        carrier=None,
        account=sip_world.bob_sip,
        password=sip_world.bob_password,
        expect=503,
    )

    assert_operator_ok(dialled)
    assert dialled.final_status() == "SIP/2.0 503 Service Unavailable"
    assert dialled.silent_carrier == []
    assert_hidden(sip_world, dialled)
    assert CallToken.objects.get().used_at is None
    assert AuditEvent.objects.filter(action="pbx.refused").get().extra["reason"] == "wrong secret"
    assert "callvault unavailable (status 401)" in lab.kamailio.log_text()
    assert_no_event_posted(sip_world, lab)


def test_a_callvault_that_does_not_take_events_never_holds_up_a_call(
    sip_world: SipWorld, sip_lab_factory: Callable[..., SipLab]
) -> None:
    """Events go out from a process of their own: with an events URL that accepts the
    connection and never answers (each post waits the full CALLVAULT_TIMEOUT, 3 s here),
    the call goes through as quickly as ever."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        lab = sip_lab_factory(events_url=f"http://127.0.0.1:{mute.getsockname()[1]}/pbx/v1/events")
        token = sip_world.issue_token()
        started = time.monotonic()
        dialled = lab.dial(token, account=sip_world.bob_sip, password=sip_world.bob_password)
        took = time.monotonic() - started

    assert_operator_ok(dialled)
    assert dialled.carrier is not None
    assert dialled.carrier.process.returncode == 0, dialled.carrier.report()
    assert dialled.final_status() == "SIP/2.0 200 OK"
    assert_hidden(sip_world, dialled)
    # Posting ringing and answered in the call's path would hold it up 6 s.
    assert took < 2.5, took
    assert Call.objects.get().state == CallState.DIALING


def test_a_call_up_for_too_long_is_reported_ended(
    sip_world: SipWorld, sip_lab_factory: Callable[..., SipLab]
) -> None:
    """A call whose BYE never comes (lost on the way, say) is reported ended after
    CALL_MAX_SECONDS, and a BYE that does come later still goes through."""
    lab = sip_lab_factory(settings={"CALL_MAX_SECONDS": 1})
    token = sip_world.issue_token()

    dialled = lab.dial(
        token, account=sip_world.bob_sip, password=sip_world.bob_password, talk_ms=3000
    )

    assert_operator_ok(dialled)
    assert dialled.carrier is not None
    assert dialled.carrier.process.returncode == 0, dialled.carrier.report()
    assert_hidden(sip_world, dialled)
    call = settled()
    assert call.state == CallState.ENDED
    assert reported(call) == ["ringing", "answered", "ended"]
    assert call.result == "timeout"
    assert call.duration_seconds is not None and call.duration_seconds <= 2


@pytest.mark.parametrize(("right", "status"), [(True, 200), (False, 401)])
def test_softphones_register_with_digest_auth(
    sip_world: SipWorld, sip_lab: SipLab, right: bool, status: int
) -> None:
    password = sip_world.bob_password if right else sip_world.olga_password

    dialled = sip_lab.dial(
        sip_world.bob_sip.username,
        operator="operator_register",
        carrier=None,
        account=sip_world.bob_sip,
        password=password,
        expect=status,
    )

    assert_operator_ok(dialled)
    finals = [r.splitlines()[0] for r in dialled.operator.received()]
    assert finals[-1].startswith(f"SIP/2.0 {status} ")


def test_without_topology_hiding_the_leak_is_seen(
    sip_world: SipWorld, sip_lab_factory: Callable[..., SipLab]
) -> None:
    """The same config with topos switched off (-A WITHOUT_TOPOS): the carrier's Contact,
    which names the number, reaches the operator, and the checks above see it. A topos that
    silently stopped working would fail the tests above in the same way."""
    lab = sip_lab_factory(topos=False)
    token = sip_world.issue_token()

    # The operator's ACK and BYE go to the number now, and get nowhere: no need to wait long.
    dialled = lab.dial(
        token, account=sip_world.bob_sip, password=sip_world.bob_password, patience_ms=1500
    )

    assert_carrier_got_the_number(sip_world, dialled)
    assert dialled.captured
    assert leaks(sip_world.e164, dialled.operator_text()) != []
    assert leaks(sip_world.e164, dialled.capture_text()) != []
    contacts = re.findall(r"^Contact: .*$", "\n".join(dialled.operator.received()), re.M)
    assert any(sip_world.e164 in contact for contact in contacts), contacts
