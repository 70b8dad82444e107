"""SIP end-to-end fixtures: the reference Kamailio (deploy/kamailio/kamailio.cfg, the very
file production runs, with this run's ports, URLs and secret as -A defines), SIPp as the
operator's softphone and as a deliberately leaky carrier, dumpcap on the operator's port, and
callvault itself on pytest-django's `live_server`, which answers the proxy's token lookups and
receives its call events.

Without kamailio (and its http_client/topos modules), sipp, dumpcap or tshark, or without
the right to capture on `lo`, the tests skip with the reason, unless CALLVAULT_E2E_STRICT=1
(as in CI), where the same reason fails them. Every process started here is stopped by its
PID in teardown, also when a test fails, and none may dump core.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from callvault.accounts.models import Membership, Project, Role
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.telephony.actions import do_start_call
from callvault.telephony.models import Pbx, SipAccount
from callvault.telephony.setup_actions import (
    do_create_pbx,
    do_create_sip_account,
    do_update_telephony_settings,
)
from conftest import make_member
from tests.e2e.conftest import strict
from tests.e2e.sip.sipkit import (
    RECV_TIMEOUT_MS,
    SCENARIOS,
    Kamailio,
    Sipp,
    free_port,
    sip_unavailable,
    start_capture,
    start_kamailio,
    start_sipp,
    stop,
)

SIP_DOMAIN = "sip.alpha.test"
TOKEN_URI = re.compile(r"^sip:(ct-[0-9a-f]{32})@")


@pytest.fixture(scope="session")
def sip_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kamailio, sipp, dumpcap and tshark, ready to use; skip (or fail when strict) if not."""
    tools, reason = sip_unavailable(tmp_path_factory.mktemp("sip-check"))
    if reason:
        if strict():
            pytest.fail(f"CALLVAULT_E2E_STRICT=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    return tools


# --- The callvault side ---------------------------------------------------------------------


@dataclass
class SipWorld:
    """A project calling by SIP token: its PBX (and secret), two operators with softphone
    accounts (and passwords), and an order in the first operator's hands."""

    project: Project
    pbx: Pbx
    pbx_secret: str
    order: Order
    e164: str
    bob: Membership
    bob_sip: SipAccount
    bob_password: str
    olga: Membership
    olga_sip: SipAccount
    olga_password: str

    def issue_token(self, member: Membership | None = None) -> str:
        """What pressing "Call" gives the member's browser: the token of a fresh call."""
        member = member or self.bob
        if member.pk != self.bob.pk:
            do_assign_order(self.order, member.user)
        _, result = do_start_call(member, self.order)
        found = TOKEN_URI.match(result.sip_uri or "")
        assert found, result
        return found.group(1)


@pytest.fixture
def sip_world(
    project: Project, operator: Membership, order: Order, phone: tuple[str, str]
) -> SipWorld:
    do_update_telephony_settings(project, {"provider": "sip_token", "sip_domain": SIP_DOMAIN})
    # Kamailio asks from 127.0.0.1: the allow-list is in force, and passes.
    pbx, secret = do_create_pbx(project, "kamailio", networks=["127.0.0.1/32"])
    olga = make_member(project, "olga", Role.OPERATOR)
    bob_sip, bob_password = do_create_sip_account(operator, "1001")
    olga_sip, olga_password = do_create_sip_account(olga, "1002")
    do_assign_order(order, operator.user)
    return SipWorld(
        project=project,
        pbx=pbx,
        pbx_secret=secret,
        order=order,
        e164=phone[1],
        bob=operator,
        bob_sip=bob_sip,
        bob_password=bob_password,
        olga=olga,
        olga_sip=olga_sip,
        olga_password=olga_password,
    )


@dataclass
class Dialled:
    """What one attempt left behind: the operator's SIPp, the carrier's SIPp (if one was
    listening) and every UDP payload seen on the operator's port."""

    operator: Sipp
    carrier: Sipp | None
    captured: list[str]
    silent_carrier: list[bytes] = field(default_factory=list)

    def operator_text(self) -> str:
        return self.operator.trace()

    def capture_text(self) -> str:
        return "\n".join(self.captured)

    def carrier_text(self) -> str:
        return self.carrier.trace() if self.carrier else ""

    def final_status(self) -> str:
        """The status line of the last final answer the operator received to its INVITE."""
        lines = [
            r.splitlines()[0]
            for r in self.operator.received()
            if re.match(r"SIP/2\.0 [2-6]\d\d ", r) and re.search(r"^CSeq: \d+ INVITE", r, re.M)
        ]
        return lines[-1] if lines else ""


def _scenario(folder: Path, name: str, status: int | None) -> Path:
    """The scenario file, or a copy of it with its @STATUS@ filled in."""
    if status is None:
        return SCENARIOS / f"{name}.xml"
    scenario = folder / f"{name}-{status}.xml"
    scenario.write_text((SCENARIOS / f"{name}.xml").read_text().replace("@STATUS@", str(status)))
    return scenario


@dataclass
class SipLab:
    """Kamailio from the reference config in front of callvault's live server, and a way
    to place one call through it."""

    tools: dict[str, str]
    folder: Path
    kamailio: Kamailio
    carrier_port: int
    runs: int = 0

    def dial(
        self,
        dialled: str,
        *,
        operator: str = "operator_answered",
        carrier: str | None = "carrier_answer",
        account: SipAccount,
        password: str | None,
        expect: int | None = None,
        carrier_status: int | None = None,
        talk_ms: int = 200,
        patience_ms: int = RECV_TIMEOUT_MS,
    ) -> Dialled:
        """The operator's softphone dials `dialled` (with digest auth when a password is
        given), while dumpcap watches its port. With `carrier=None` a plain socket listens
        on the carrier's port instead, to show that nothing reached it. `expect` fills in
        the @STATUS@ a scenario waits for (operator_rejected.xml, operator_register.xml),
        `carrier_status` the one the carrier answers with (carrier_refuses.xml); `talk_ms`
        is how long an answered call lasts before the operator (operator_answered.xml) or
        the customer (carrier_hangup.xml) hangs up; `patience_ms` is how long the softphone
        waits for each answer before it gives up."""
        self.runs += 1
        folder = self.folder / f"run-{self.runs}"
        folder.mkdir()
        scenario = _scenario(folder, operator, expect)
        carrier_sipp = None
        silent = None
        if carrier is None:
            silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            silent.bind(("127.0.0.1", self.carrier_port))
            silent.setblocking(False)
        else:
            carrier_sipp = start_sipp(
                self.tools,
                folder,
                "carrier",
                _scenario(folder, carrier, carrier_status),
                port=self.carrier_port,
                args=["-d", str(talk_ms)],
                patience_ms=patience_ms,
            )
        op_port = free_port()
        capture = start_capture(self.tools, folder, op_port)
        auth = ["-au", account.username, "-ap", password] if password is not None else []
        operator_sipp = None
        try:
            operator_sipp = start_sipp(
                self.tools,
                folder,
                "operator",
                scenario,
                port=op_port,
                args=[
                    "-d",
                    str(talk_ms),
                    "-s",
                    dialled,
                    "-key",
                    "user",
                    account.username,
                    "-key",
                    "realm",
                    account.realm,
                    *auth,
                    f"127.0.0.1:{self.kamailio.port}",
                ],
                patience_ms=patience_ms,
            )
            operator_sipp.wait()
            if carrier_sipp is not None:
                carrier_sipp.wait()
        finally:
            if operator_sipp is not None:
                stop(operator_sipp.process)
            if carrier_sipp is not None:
                stop(carrier_sipp.process)
            captured = capture.stop()
            heard: list[bytes] = []
            if silent is not None:
                with suppress(BlockingIOError):
                    while True:
                        heard.append(silent.recv(65535))
                silent.close()
        assert operator_sipp is not None
        return Dialled(
            operator=operator_sipp, carrier=carrier_sipp, captured=captured, silent_carrier=heard
        )


@pytest.fixture
def sip_lab_factory(
    sip_tools: dict[str, str],
    sip_world: SipWorld,
    live_server: Any,
    tmp_path: Path,
) -> Iterator[Callable[..., SipLab]]:
    """Factory: sip_lab_factory(topos=True, secret=None, events_url=None, settings=None)
    starts Kamailio for the world's PBX (with another secret, another place to post call
    events, or more of the config's defines, when given them)."""
    started: list[Kamailio] = []
    port = urlsplit(live_server.url).port
    resolve_url = f"http://127.0.0.1:{port}{reverse('pbx:resolve')}"
    callvault_events = f"http://127.0.0.1:{port}{reverse('pbx:events')}"

    def make(
        *,
        topos: bool = True,
        secret: str | None = None,
        events_url: str | None = None,
        settings: dict[str, str | int | None] | None = None,
    ) -> SipLab:
        folder = tmp_path / f"lab-{len(started)}"
        folder.mkdir()
        carrier_port = free_port()
        kamailio = start_kamailio(
            sip_tools,
            folder,
            resolve_url=resolve_url,
            events_url=events_url or callvault_events,
            secret=sip_world.pbx_secret if secret is None else secret,
            carrier_port=carrier_port,
            topos=topos,
            settings=settings,
        )
        started.append(kamailio)
        return SipLab(tools=sip_tools, folder=folder, kamailio=kamailio, carrier_port=carrier_port)

    yield make
    for kamailio in started:
        stop(kamailio.process)


@pytest.fixture
def sip_lab(sip_lab_factory: Callable[..., SipLab]) -> SipLab:
    """Kamailio with topology hiding, as deployed."""
    return sip_lab_factory()
