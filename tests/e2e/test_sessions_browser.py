"""Sessions in a real browser: the idle lock covers the page and the server refuses the
locked session until the password is typed; a session ended on "My sessions" is logged out;
the API docs page works under the strict content security policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from callvault.accounts.models import MemberSession, Membership, Role, RolePolicy
from callvault.accounts.policy import do_update_role_policy
from callvault.accounts.sessions import GUARD_KEY
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def session_key(b: Any) -> str:
    cookies = b.page.context.cookies()
    return str(next(c["value"] for c in cookies if c["name"] == "sessionid"))


def idle_on_the_server(key: str, minutes: int) -> None:
    """The server's view of the same idleness: last seen long ago, checked again now."""
    MemberSession.objects.filter(session_key=key).update(
        last_seen_at=timezone.now() - timedelta(minutes=minutes)
    )
    store = SessionStore(session_key=key)
    guard = store[GUARD_KEY]
    guard["at"] = 0
    store[GUARD_KEY] = guard
    store.save()


def test_an_idle_page_locks_the_server_refuses_it_and_the_password_opens_it(
    browse: Any, operator: Membership
) -> None:
    row = RolePolicy.objects.get(project=operator.project, role=Role.OPERATOR)
    do_update_role_policy(row, idle_minutes=1)
    b = browse()
    b.page.clock.install()
    b.login("bob", PASSWORD)
    mine = f"/p/{operator.project.slug}/orders/mine/"
    assert b.page.url.endswith(mine)
    assert b.page.locator("body").get_attribute("data-idle-seconds") == "60"
    overlay = b.page.locator("#idle-lock")
    assert overlay.count() == 0

    b.page.clock.fast_forward("01:10")
    overlay.wait_for(state="visible")
    assert overlay.locator("input[type=password]").is_visible()

    idle_on_the_server(session_key(b), minutes=5)
    refused = b.page.request.get(b.base_url + "/p/alpha/orders/", max_redirects=0)
    assert refused.status == 302
    assert refused.headers["location"].startswith("/accounts/unlock/")
    key = session_key(b)
    assert MemberSession.objects.get(session_key=key).locked_at is not None

    overlay.locator("input[type=password]").fill(PASSWORD)
    with b.page.expect_navigation():
        overlay.locator("button[type=submit]", has_text="Unlock").click()
    assert b.page.url.endswith(mine)
    assert b.page.locator("#idle-lock").count() == 0
    assert MemberSession.objects.get(session_key=key).locked_at is None
    b.goto("/accounts/sessions/")
    assert b.page.url.endswith("/accounts/sessions/")


def test_a_wrong_password_on_the_lock_screen_keeps_it_locked(
    browse: Any, operator: Membership
) -> None:
    b = browse()
    b.login("bob", PASSWORD)
    idle_on_the_server(session_key(b), minutes=15)
    b.goto("/p/alpha/orders/mine/")
    assert "/accounts/unlock/" in b.page.url
    b.page.fill("section.narrow input[name=password]", "not the password")
    with b.page.expect_navigation():
        b.page.click("section.narrow form.unlock button[type=submit]")
    assert "/accounts/unlock/" in b.page.url
    assert b.page.locator("ul.errorlist").is_visible()
    b.goto("/p/alpha/orders/mine/")
    assert "/accounts/unlock/" in b.page.url


def test_ending_another_session_on_my_sessions_logs_that_browser_out(
    browse: Any, operator: Membership
) -> None:
    here, there = browse(), browse()
    here.login("bob", PASSWORD)
    there.login("bob", PASSWORD)
    here.goto("/accounts/sessions/")
    rows = here.page.locator("table.sessions tbody tr")
    assert rows.count() == 2
    other = here.page.locator("table.sessions tbody tr:not(.current)")
    with here.page.expect_navigation():
        other.get_by_role("button", name="End session").click()
    assert here.page.locator("table.sessions tbody tr").count() == 1
    there.goto("/p/alpha/orders/mine/")
    assert "/accounts/login/" in there.page.url
    here.goto("/p/alpha/orders/mine/")
    assert here.page.url.endswith("/p/alpha/orders/mine/")


def test_the_api_docs_page_renders_under_the_strict_policy(
    browse: Any, operator: Membership
) -> None:
    b = browse()
    violations: list[str] = []
    b.page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    b.goto("/api/v1/docs")
    b.page.locator(".swagger-ui .info").wait_for(state="visible")
    assert b.page.locator(".swagger-ui .opblock").count() > 0
    assert not violations, violations


def test_an_active_person_keeps_the_session_open_with_a_ping(
    browse: Any, operator: Membership
) -> None:
    b = browse()
    b.page.clock.install()
    b.login("bob", PASSWORD)
    key = session_key(b)
    idle_on_the_server(key, minutes=5)  # an operator's limit is 10 minutes
    b.page.clock.fast_forward("01:30")
    with b.page.expect_response(lambda r: r.url.endswith("/accounts/unlock/ping/")) as ping:
        b.page.mouse.move(200, 300)
        b.page.mouse.move(220, 320)
    assert ping.value.status == 200
    assert ping.value.json() == {"locked": False, "logged_in": True}
    seen = MemberSession.objects.get(session_key=key).last_seen_at
    assert (timezone.now() - seen).total_seconds() < 60
    assert b.page.locator("#idle-lock").count() == 0
