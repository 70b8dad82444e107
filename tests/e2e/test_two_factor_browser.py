"""The second factor in a real browser: an authenticator app set up from its QR page and used
at the next login; a passkey registered and used through Chromium's virtual authenticator.

WebAuthn works only in a secure context: `localhost` is one (127.0.0.1 is not for every
browser), so these tests browse the live server by that name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from callvault.accounts.models import Membership, Role, WebAuthnCredential
from callvault.accounts.tests.test_two_factor_totp import code_for
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, make_member, make_project
from tests.e2e.conftest import Browse

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner_member(transactional_db: Any) -> Membership:
    return make_member(make_project("alpha"), "alice", Role.OWNER)


def on_localhost(browse: Callable[..., Browse]) -> Browse:
    b = browse()
    b.base_url = b.base_url.replace("127.0.0.1", "localhost")
    return b


def log_out(b: Browse) -> None:
    with b.page.expect_navigation():
        b.page.click("form.logout button[type=submit]")


def test_an_owner_sets_up_an_app_and_needs_its_code_at_the_next_login(
    browse: Callable[..., Browse], owner_member: Membership
) -> None:
    b = on_localhost(browse)
    b.login("alice", PASSWORD)
    b.goto("/")
    b.page.click("header a[href='/accounts/two-factor/']")
    b.page.click("a[href^='/accounts/two-factor/app/']")
    assert b.page.locator(".qr svg path").count() == 1
    device = TOTPDevice.objects.get(user=owner_member.user, confirmed=False)
    b.page.fill("input[name=code]", code_for(device))
    with b.page.expect_navigation():
        b.page.click("form.stacked button[type=submit]")
    codes = b.page.locator("ol.recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    b.page.click("text=I have saved them")
    log_out(b)

    b.goto("/accounts/login/")
    b.page.fill("input[name=username]", "alice")
    b.page.fill("input[name=password]", PASSWORD)
    with b.page.expect_navigation():
        b.page.click("form[action$='/accounts/login/'] button[type=submit]")
    assert "/accounts/two-factor/verify/" in b.page.url
    b.goto("/p/alpha/settings/members/")  # nothing else first
    assert "/accounts/two-factor/verify/" in b.page.url
    device.refresh_from_db()
    b.page.fill("input[name=code]", code_for(device, 1))
    with b.page.expect_navigation():
        b.page.click("form.stacked button[type=submit]")
    assert b.page.url.endswith("/p/alpha/settings/members/")
    assert AuditEvent.objects.filter(action="auth.2fa_verified").count() == 1
    assert not b.seen.errors
    assert [url for url, status, _, _ in b.seen.responses if status >= 400] == []


def test_an_owner_registers_a_passkey_and_logs_in_with_it(
    browse: Callable[..., Browse], owner_member: Membership
) -> None:
    b = on_localhost(browse)
    cdp = b.page.context.new_cdp_session(b.page.raw)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    b.login("alice", PASSWORD)
    b.goto("/accounts/two-factor/")
    b.page.fill("#passkey-name", "Laptop")
    b.page.click("form.passkey-add button[type=submit]")
    b.page.wait_for_selector("table.passkeys td:text('Laptop')")
    passkey = WebAuthnCredential.objects.get(user=owner_member.user)
    assert passkey.name == "Laptop"
    log_out(b)

    b.login("alice", PASSWORD)
    assert "/accounts/two-factor/verify/" in b.page.url
    with b.page.expect_navigation(url=lambda url: "/two-factor/" not in url):
        b.page.click("form.passkey-use button[type=submit]")
    assert "/accounts/" not in b.page.url
    passkey.refresh_from_db()
    assert passkey.last_used_at is not None
    verified = AuditEvent.objects.get(action="auth.2fa_verified")
    assert verified.extra["method"] == "passkey"
    assert passkey.credential_id not in str(verified.extra)
    # (The JSON answers are navigated away from at once, so only their statuses are seen.)
    assert [url for url, status, _, _ in b.seen.responses if status >= 400] == []
