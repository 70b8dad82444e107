"""Allowed networks in a real browser: a login from outside the project's list ends on the
refusal page with no session; an owner saving a list that leaves out their own address is
asked to confirm first, and is refused right after confirming.

The live server sees the browser at 127.0.0.1, so "outside" is any list without it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore

from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import AllowedNetwork, Membership
from callvault.accounts.stepup import SESSION_KEY
from callvault.audit.models import AuditEvent
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REFUSED = "Access from this address is not allowed"


def fill_login(b: Any, username: str) -> Any:
    b.goto("/accounts/login/")
    b.page.fill("input[name=username]", username)
    b.page.fill("input[name=password]", PASSWORD)
    with b.page.expect_navigation() as nav:
        b.page.click("form[action$='/accounts/login/'] button[type=submit]")
    return nav.value


def test_a_login_from_outside_the_list_ends_on_the_refusal_page(
    browse: Any, operator: Membership
) -> None:
    do_add_network(operator.project, "192.0.2.0/24", "Office")
    b = browse()
    response = fill_login(b, "bob")
    assert response.status == 403
    assert b.page.locator("h1").inner_text() == REFUSED
    assert "192.0.2" not in b.page.content()
    assert not [c for c in b.page.context.cookies() if c["name"] == "sessionid"]
    # No way in through another page either: back to the login form.
    b.goto(f"/p/{operator.project.slug}/orders/mine/")
    assert "/accounts/login/" in b.page.url
    assert AuditEvent.objects.filter(action="auth.ip_refused", extra__ip="127.0.0.1").exists()


def test_an_owner_confirms_before_locking_themselves_out(browse: Any, owner: Membership) -> None:
    b = browse()
    b.login("alice", PASSWORD)
    key = next(c["value"] for c in b.page.context.cookies() if c["name"] == "sessionid")
    store = SessionStore(session_key=key)
    store[SESSION_KEY] = time.time()  # as if the step-up had just been passed
    store.save()
    b.goto(f"/p/{owner.project.slug}/settings/networks/")
    assert "127.0.0.1" in b.page.locator("main").inner_text()  # "Your address now"
    b.page.fill("input[name=network]", "192.0.2.0/24")
    b.page.fill("input[name=label]", "Office")
    with b.page.expect_navigation():
        b.page.click("main form.stacked button[type=submit]")
    warning = b.page.locator("[role=alert]")
    assert "would refuse your own address (127.0.0.1)" in warning.inner_text()
    assert not AllowedNetwork.objects.exists()
    # The form kept what was typed; the box must be ticked to save.
    assert b.page.input_value("input[name=network]") == "192.0.2.0/24"
    b.page.check("input[name=confirm_lockout]")
    with b.page.expect_navigation():
        b.page.click("main form.stacked button[type=submit]")
    assert AllowedNetwork.objects.get().network == "192.0.2.0/24"
    # The page the save returns to is already refused: the owner asked for it.
    assert b.page.locator("h1").inner_text() == REFUSED
    event = AuditEvent.objects.get(action="allowed_network.add")
    assert event.extra["lockout_confirmed"] is True
