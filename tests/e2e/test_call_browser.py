"""A trainee presses "Call" in a real browser: the page gets a sip: link holding a one-time
token, and no page, network response or token carries the customer's number in any form;
the token resolves to the number only for the PBX."""

from __future__ import annotations

import re
from datetime import time as clock
from typing import Any

import pytest
from django.test import Client

from callvault.accounts.models import Membership, Project
from callvault.lib.fakephones import STYLES
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import WorkSettings
from callvault.telephony.models import Call, CallState
from callvault.telephony.setup_actions import (
    do_create_pbx,
    do_create_sip_account,
    do_update_telephony_settings,
)
from conftest import PASSWORD
from tests.e2e.conftest import Seen, find_phone, phone_patterns

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIP_DOMAIN = "sip.alpha.test"
SIP_LINK = re.compile(r"^sip:(ct-[0-9a-f]{32})@sip\.alpha\.test$")


def test_a_trainee_calls_and_only_the_pbx_ever_sees_the_number(
    browse: Any, trainee: Membership, project: Project, phone: tuple[str, str]
) -> None:
    WorkSettings.objects.filter(project=project).update(
        calling_hours_start=clock(0, 0), calling_hours_end=clock(23, 59, 59)
    )
    do_update_telephony_settings(project, {"provider": "sip_token", "sip_domain": SIP_DOMAIN})
    # The test client's requests come from 127.0.0.1: the PBX's allowed network.
    _, pbx_secret = do_create_pbx(project, "kamailio", networks=["127.0.0.1/32"])
    do_create_sip_account(trainee, "1009")
    # The customer also typed the number into the address, written another way.
    e164 = phone[1]
    typed_again = STYLES[2].format(a=e164[2:5], l=e164[-3:])
    lead = Lead(phone=phone[0], name="Ivan Petrov", address=f"Tver, call {typed_again}")
    lead.items = [LeadItem("TEA", 1)]
    order = do_create_order(project, lead).order
    # The detector is not vacuous: it finds the number written as the address has it.
    assert find_phone(e164, Seen(responses=[("x", 200, "text/plain", typed_again)]))

    b = browse()
    b.login(trainee.user.username, PASSWORD)
    b.goto(f"/p/{project.slug}/orders/mine/")
    with b.page.expect_navigation():
        b.page.click("form.next button[type=submit]")
    assert f"/orders/{order.pk}/" in b.page.url, b.page.url

    with b.page.expect_response(lambda r: r.url.endswith(f"/orders/{order.pk}/call/")) as got:
        b.page.click("dd.call button[type=submit]")
    assert got.value.status == 200
    assert got.value.request.headers.get("hx-request") == "true"
    assert got.value.request.post_data in ("", None) or "csrfmiddlewaretoken" in (
        got.value.request.post_data or ""
    )
    link = b.page.locator("#call-result a.sip-link")
    link.wait_for()
    href = link.get_attribute("href") or ""
    found = SIP_LINK.match(href)
    assert found, href
    token = found.group(1)
    assert "Dialing" in b.page.locator("#call-result").inner_text()
    # The token holds no digits of the number in any form.
    for pattern in phone_patterns(e164):
        assert not pattern.search(token), pattern.pattern

    # Reload the card: its call history shows the new call, still without the number.
    b.page.reload()
    b.page.locator("#calls tr[data-state='new']").wait_for()
    assert find_phone(e164, b.seen) == [], find_phone(e164, b.seen)
    assert b.seen.errors == []

    # The token stands for the number, for the PBX only, once.
    pbx = Client()
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {pbx_secret}"}
    answer = pbx.post("/pbx/v1/resolve", {"token": token, "operator": "1009"}, **auth)
    assert (answer.status_code, answer.content.decode()) == (200, e164)
    again = pbx.post("/pbx/v1/resolve", {"token": token, "operator": "1009"}, **auth)
    assert again.status_code == 410
    assert Call.objects.get().state == CallState.DIALING
