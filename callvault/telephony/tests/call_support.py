"""What the call tests share: a project calling by SIP token, its PBX, operators' SIP
accounts, orders in an operator's or a trainee's hands, and the PBX's requests."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, assert_no_digits, event_text
from callvault.telephony import throttle
from callvault.telephony.models import Pbx, SipAccount
from callvault.telephony.setup_actions import (
    do_create_pbx,
    do_create_sip_account,
    do_update_telephony_settings,
)

SIP_DOMAIN = "sip.alpha.test"
# Where the test client's requests come from: a PBX's allowed networks (at least one).
LOCAL = ["127.0.0.1/32"]
SIP_URI = re.compile(r"sip:(ct-[0-9a-f]{32})@sip\.alpha\.test")


@pytest.fixture
def sip_project(project: Project) -> Project:
    """The project, calling through SIP token dialing."""
    do_update_telephony_settings(project, {"provider": "sip_token", "sip_domain": SIP_DOMAIN})
    return project


@pytest.fixture
def one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed-window counters (throttle.py) see one moment in the middle of a minute, so
    a test's requests all fall in one window whenever it runs: a minute's turn in between
    let more through and failed such tests now and then."""
    middle_of_a_window = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: middle_of_a_window))


@pytest.fixture
def pbx(sip_project: Project) -> tuple[Pbx, str]:
    """The project's SIP proxy and its secret."""
    return do_create_pbx(sip_project, "kamailio", networks=LOCAL)


def sip_account(member: Membership, extension: str) -> SipAccount:
    """A SIP account for the member (its password is not needed here)."""
    return do_create_sip_account(member, extension)[0]


@pytest.fixture
def bobs_phone(sip_project: Project, operator: Membership) -> SipAccount:
    return sip_account(operator, "1001")


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    """The order, assigned to the operator."""
    do_assign_order(order, operator.user)
    return order


def hold(member: Membership, order: Order) -> Order:
    """The order in the member's hands from the queue (how a trainee sees one)."""
    Order.objects.filter(pk=order.pk).update(
        locked_by=member.user, locked_until=timezone.now() + timedelta(minutes=30)
    )
    return order


def card_client(member: Membership) -> HttpsClient:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    return client


def press_call(member: Membership, order: Order, *, htmx: bool = True) -> Any:
    """The card's Call button, as HTMX posts it: only the order id, in the address."""
    headers = {"HX-Request": "true"} if htmx else {}
    return card_client(member).post(
        reverse("orders:call", args=[order.project.slug, order.pk]), headers=headers
    )


def token_of(response: Any) -> str:
    """The token in a started call's sip: link."""
    found = SIP_URI.search(response.content.decode())
    assert found, response.content.decode()
    return found.group(1)


def pbx_post(
    secret: str | None,
    name: str,
    data: dict[str, Any] | str,
    *,
    as_json: bool = False,
    **extra: Any,
) -> Any:
    """A PBX's request to /pbx/v1/<name>: form-encoded, or JSON; in English unless `extra`
    names another language (a PBX that sends none gets the installation's, Russian)."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE=extra.pop("HTTP_ACCEPT_LANGUAGE", "en"))
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    path = reverse(f"pbx:{name}")
    if as_json:
        body = data if isinstance(data, str) else json.dumps(data)
        return client.post(path, body, content_type="application/json", **headers, **extra)
    return client.post(path, data, **headers, **extra)


def resolve(secret: str, token: str, operator: str = "1001", **extra: Any) -> Any:
    return pbx_post(secret, "resolve", {"token": token, "operator": operator}, **extra)


def assert_no_digits_anywhere(e164: str, *texts: str) -> None:
    """Neither the texts nor any audit event carry the number in any writing."""
    for text in texts:
        assert_no_digits(text, e164)
    for event in AuditEvent.objects.all():
        assert_no_digits(event_text(event), e164)


def telephony_rows(owner: Membership, operator: Membership, order: Order) -> None:
    """One row of each telephony model, each made through its action (for the audit's
    completeness check): settings, a PBX, a SIP account, a call with its token, the call's
    recording and a review of it."""
    import io

    from callvault.telephony.actions import do_start_call
    from callvault.telephony.recordings import do_create_call_review, do_store_recording
    from callvault.telephony.tests.recording_support import wav_bytes

    project = order.project
    do_update_telephony_settings(project, {"provider": "sip_token", "sip_domain": SIP_DOMAIN})
    do_create_pbx(project, "kamailio", networks=LOCAL)
    sip_account(owner, "1000")
    call, _ = do_start_call(owner, order)
    do_store_recording(call, io.BytesIO(wav_bytes(0.1)))
    do_create_call_review(call, checked=[], comment="", acting=owner)


def drive_telephony_paths(run: Any, owner: Membership, rng: Any) -> None:
    """For audit/tests/test_no_secrets_in_events.py: every path that writes a telephony
    secret column (the provider's sealed secret, a PBX secret's hash, a call token's hash),
    through the pages where they exist, with each secret noted as a plaintext no event may
    hold and the called number as one no event may carry. `run` is that test's Run."""
    import time as _time

    from django.core.management import call_command

    from callvault.accounts.stepup import SESSION_KEY
    from callvault.lib.fakephones import fake_phone
    from callvault.orders.intake import Lead, LeadItem, do_create_order
    from callvault.vault.phones import parse_phone

    slug = owner.project.slug
    client = card_client(owner)
    session = client.session
    session[SESSION_KEY] = _time.time()  # the owner's step-up, a moment ago
    session.save()
    settings_url = reverse("telephony:settings", args=[slug])
    form = {
        "provider": "sip_token",
        "sip_domain": SIP_DOMAIN,
        "token_ttl_seconds": 60,
        "ami_port": 5038,
        "ami_channel": "PJSIP/{extension}",
        "unknown_caller_name": "New caller",
        "recording_retention_days": 30,
    }
    for secret in ("provider secret one", "provider secret two"):
        run.plaintexts.add(secret)
        assert run.step(lambda s=secret: client.post(settings_url, {**form, "secret": s}))
    pbx_page = run.step(
        lambda: client.post(
            reverse("telephony:pbxs", args=[slug]), {"name": "k", "networks": "127.0.0.1/32"}
        )
    )
    pbx_secret = pbx_page.context["secret"]
    run.plaintexts.add(pbx_secret)
    sip_page = run.step(
        lambda: client.post(
            reverse("telephony:sip_accounts", args=[slug]),
            {"membership": owner.pk, "username": "1000"},
        )
    )
    run.plaintexts.add(sip_page.context["password"])
    typed, e164 = fake_phone(rng)
    run.numbers.add(parse_phone(e164, region="RU").e164)
    lead = Lead(phone=typed, name="Caller", items=[LeadItem("TEA", 1)])
    order = run.step(lambda: do_create_order(owner.project, lead).order)
    call_url = reverse("orders:call", args=[slug, order.pk])
    token = token_of(run.step(lambda: client.post(call_url, headers={"HX-Request": "true"})))
    run.plaintexts.add(token)
    assert run.step(lambda: resolve(pbx_secret, token, operator="1000")).status_code == 200
    assert run.step(lambda: resolve(pbx_secret, token, operator="1000")).status_code == 410
    wrong = pbx_secret[:-4] + ("aaaa" if not pbx_secret.endswith("aaaa") else "bbbb")
    run.plaintexts.add(wrong)
    assert run.step(lambda: resolve(wrong, token)).status_code == 401
    pbx = Pbx.objects.get(project=owner.project)
    run.step(lambda: client.post(reverse("telephony:pbx_revoke", args=[slug, pbx.pk])))
    assert run.step(lambda: resolve(pbx_secret, token)).status_code == 401
    run.step(lambda: call_command("vault", "rotate", "--batch", "2"))
