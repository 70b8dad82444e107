"""Support access in a real browser: the owner grants a read-only one-time link (after the
step-up), the outside person enters by it without a password, a change is refused, and the
owner's revocation ends the person's session on their next page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from callvault.accounts.models import Membership, SupportGrant
from callvault.orders.models import Order
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_one_time_link_lets_support_read_but_not_change_until_revoked(
    browse: Any, owner: Membership, order: Order
) -> None:
    b = browse()
    b.login("alice", PASSWORD)
    b.goto("/p/alpha/settings/support/")
    b.page.check("input[name=kind][value=link]")
    b.page.fill("input[name=person]", "Oleg from Acme")
    b.page.fill("input[name=reason]", "the export crashes")
    with b.page.expect_navigation():
        b.page.click("form.stacked button[type=submit]")
    if "/accounts/step-up/" in b.page.url:  # granting is a security change: prove it again
        b.page.fill("input[name=password]", PASSWORD)
        with b.page.expect_navigation():
            b.page.click("form.stacked button[type=submit]")
        b.goto("/p/alpha/settings/support/")
        b.page.check("input[name=kind][value=link]")
        b.page.fill("input[name=person]", "Oleg from Acme")
        b.page.fill("input[name=reason]", "the export crashes")
        with b.page.expect_navigation():
            b.page.click("form.stacked button[type=submit]")
    link = b.page.locator(".card.secret code.key").inner_text()
    assert re.fullmatch(r"http://[^/]+/accounts/support/[A-Za-z0-9_-]{40,}/", link)

    support = browse()
    support.page.goto(link)
    assert "Oleg from Acme" in support.page.content()
    with support.page.expect_navigation():
        support.page.click("button:has-text('Enter as support')")
    assert support.page.url.endswith("/p/alpha/orders/")
    support.goto(f"/p/alpha/orders/{order.pk}/")
    assert support.page.locator("text=Ivan Petrov").count() >= 1
    refused = support.page.request.post(
        support.base_url + f"/p/alpha/orders/{order.pk}/comments/",
        form={"text": "hello"},
        # The page's own request context sends no Accept-Language of the browser's locale.
        headers={"X-CSRFToken": csrf(support), "Accept-Language": "en"},
    )
    assert refused.status == 403
    assert "read-only" in refused.text()

    again = browse()
    again.page.goto(link)
    assert "does not work" in again.page.content()

    b.goto("/p/alpha/settings/support/")
    with b.page.expect_navigation():
        b.page.click("table.support-grants button:has-text('Revoke')")
    assert SupportGrant.objects.get().revoked_at is not None
    ended = support.goto("/p/alpha/orders/")
    assert ended.status == 403
    assert "Support access ended" in support.page.content()


def csrf(b: Any) -> str:
    return str(next(c["value"] for c in b.page.context.cookies() if c["name"] == "csrftoken"))
