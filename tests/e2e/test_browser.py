"""A real browser against the live server: what operators, supervisors and owners see.

The leak checks look at every response the browser received (HTML, JSON, JS, CSS, redirects,
with headers and URLs), not just the text on the screen.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone, translation
from django.utils.translation import gettext

from callvault.accounts import stepup
from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import AREA_CODES, RESERVED_LINES, STYLES
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order
from conftest import PASSWORD, make_member
from tests.e2e.conftest import check_png, find_phone

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def written_as(e164: str, style: int) -> str:
    """A reserved +1 number from fakephones written in one of its STYLES."""
    assert e164.startswith("+1") and len(e164) == 12, e164
    return STYLES[style].format(a=e164[2:5], l=e164[-3:])


def another_phone(taken: str) -> str:
    """A different reserved number (E.164)."""
    rng = random.Random()
    while True:
        e164 = f"+1{rng.choice(AREA_CODES)}5550{rng.choice(list(RESERVED_LINES))}"
        if e164 != taken:
            return e164


def card_path(order: Order) -> str:
    return f"/p/{order.project.slug}/orders/{order.pk}/"


def list_path(project: Project) -> str:
    return f"/p/{project.slug}/orders/"


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_assigned_order_never_carries_the_digits(
    role: str, request: Any, browse: Any, order: Order, phone: tuple[str, str]
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, member.user)
    if role == "trainee":  # a trainee sees only the order in their hands (the queue's hold)
        Order.objects.filter(pk=order.pk).update(
            locked_by=member.user, locked_until=timezone.now() + timedelta(minutes=15)
        )
    masked = order.phone_masked()
    b = browse()

    b.login(member.user.username, PASSWORD)
    # "/" sends an operator of one project straight to their own orders...
    assert b.page.url.endswith(list_path(order.project) + "mine/"), b.page.url
    assert str(order.number) in b.page.locator("main").inner_text()
    # ...and the orders list shows them the same orders.
    b.goto(list_path(order.project))
    row = b.page.locator("table.orders tbody tr", has_text=str(order.number))
    assert row.count() == 1
    assert row.locator("td.phone").inner_text().strip() == masked
    with b.page.expect_navigation():
        row.get_by_role("link", name=str(order.number)).click()
    assert b.page.url.endswith(card_path(order))
    assert b.page.locator("dd.phone").inner_text().strip() == masked
    assert b.page.locator("input[name=purpose]").count() == 0  # no "Show number" for them
    b.page.wait_for_load_state("networkidle")

    seen = b.seen
    assert not seen.errors, seen.errors
    # Not vacuous: the pages with the (masked) number and their sub-resources were looked at.
    urls = [url for url, *_ in seen.responses]
    assert len(urls) >= 4, urls
    assert any(url.endswith(".css") for url in urls), urls
    html = seen.bodies_of("text/html")
    assert sum(masked in body for body in html) >= 2, "list and card should show the mask"
    assert sum("Ivan Petrov" in body for body in html) >= 2
    leaks = find_phone(phone[1], seen)
    assert not leaks, "the number reached the browser:\n" + "\n".join(leaks)


def test_operator_cannot_open_another_operators_order_or_search(
    browse: Any, operator: Membership, project: Project, order: Order, phone: tuple[str, str]
) -> None:
    colleague = make_member(project, "olga", Role.OPERATOR)
    do_assign_order(order, colleague.user)
    b = browse()
    b.login(operator.user.username, PASSWORD)

    b.goto(list_path(project))
    assert b.page.locator("main h1").inner_text().strip() == "My orders"
    assert b.page.locator("input[name=q]").count() == 0
    assert b.page.locator(f"a[href$='/orders/{order.pk}/']").count() == 0
    assert "Ivan Petrov" not in b.page.locator("table.orders").inner_text()

    response = b.goto(card_path(order))
    assert response.status == 404
    assert "Ivan Petrov" not in b.page.content()

    # Searches are POSTs: a query typed into the address bar searches nothing...
    response = b.goto(list_path(project) + "?q=" + phone[1].lstrip("+"))
    assert response.status == 200
    assert "Ivan Petrov" not in b.page.content()
    assert f"/orders/{order.pk}/" not in b.page.content()
    # ...and a search posted by hand, with a valid CSRF token, is refused.
    status = b.page.evaluate(
        """async ([url, q]) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const r = await fetch(url, {method: "POST", body: new URLSearchParams({q}),
                                        headers: {"X-CSRFToken": token}});
            return [r.status, await r.text()];
        }""",
        [list_path(project), phone[1]],
    )
    assert status[0] == 403
    assert "CSRF" not in status[1]  # refused by the view, not by a bad token


def test_supervisor_finds_order_by_number_typed_differently(
    browse: Any, supervisor: Membership, project: Project, order: Order, phone: tuple[str, str]
) -> None:
    decoy = do_create_order(
        project, Lead(phone=another_phone(phone[1]), name="Decoy", items=[LeadItem("TEA", 1)])
    ).order
    typed = written_as(phone[1], 4)  # "8 10 1 212 555 0123"; intake was "+1 (212) 555-0123"
    assert typed != phone[0]
    b = browse()
    b.login(supervisor.user.username, PASSWORD)
    b.goto(list_path(project))
    rows = b.page.locator("table.orders tbody tr")
    assert rows.count() == 2  # both orders before searching

    b.page.fill("input[name=q]", typed)
    with b.page.expect_navigation():
        b.page.click("form.search button[type=submit]")
    assert b.page.locator("p.error").count() == 0, b.page.locator("p.error").all_inner_texts()
    assert rows.count() == 1
    assert rows.first.locator("a").inner_text().strip() == str(order.number)
    assert b.page.locator(f"table.orders a[href$='/orders/{decoy.pk}/']").count() == 0
    assert "Decoy" not in b.page.locator("table.orders").inner_text()
    assert rows.first.locator("td.phone").inner_text().strip() == order.phone_masked()
    assert AuditEvent.objects.filter(action="order.search", project_id=project.pk).exists()


def test_owner_reveals_number_with_purpose_and_it_is_audited(
    browse: Any, owner: Membership, order: Order, phone: tuple[str, str]
) -> None:
    b = browse()
    b.login(owner.user.username, PASSWORD)
    # The login itself counts as a fresh proof for a few minutes: let it go stale, as it is
    # when an owner reveals a number later in the day.
    (cookie,) = [c for c in b.page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME]
    session = SessionStore(session_key=cookie["value"])
    session[stepup.SESSION_KEY] = time.time() - 3600
    session.save()
    b.goto(card_path(order))
    assert b.page.locator("strong.revealed").count() == 0
    # Seeing the card is not seeing the number: digits only come out through reveal.
    assert not find_phone(phone[1], b.seen), find_phone(phone[1], b.seen)
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()

    b.page.fill("input[name=purpose]", "customer asked for a callback")
    with b.page.expect_navigation():
        b.page.click("form[action$='/reveal/'] button[type=submit]")
    # A reveal needs a fresh proof of who is asking: the password again, then back to the card.
    assert "/accounts/step-up/" in b.page.url
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()
    b.page.fill("input[name=password]", PASSWORD)
    with b.page.expect_navigation():
        b.page.click("main form.stacked button[type=submit]")
    assert b.page.url.endswith(card_path(order))
    b.page.fill("input[name=purpose]", "customer asked for a callback")
    with b.page.expect_navigation():
        b.page.click("form[action$='/reveal/'] button[type=submit]")
    assert b.page.url.endswith(card_path(order) + "reveal/")
    assert b.page.locator("strong.revealed").inner_text().strip() == phone[1]
    # The same detector that guards the operators' pages sees the digits when they are there.
    assert find_phone(phone[1], b.seen)

    event = AuditEvent.objects.get(action="phone.reveal", object_id=str(order.pk))
    assert event.project_id == order.project_id
    assert (event.actor_kind, event.actor_id) == ("member", str(owner.user.pk))
    assert event.extra.get("purpose") == "customer asked for a callback"
    assert phone[1].lstrip("+") not in str(event.extra) + str(event.changes)


def _translated(text: str, lang: str) -> str:
    with translation.override(lang):
        return gettext(text)


def test_language_switch_in_header(browse: Any, operator: Membership, order: Order) -> None:
    do_assign_order(order, operator.user)
    b = browse(locale="en-US")
    b.login(operator.user.username, PASSWORD)
    html = b.page.locator("html")
    heading = b.page.locator("main h1")
    assert html.get_attribute("lang") == "en"
    assert heading.inner_text().strip() == "My orders"
    russian = _translated("My orders", "ru")  # English until the ru catalogue is compiled

    for lang, expected in (("ru", russian), ("en", "My orders"), ("ru", russian)):
        with b.page.expect_navigation():
            b.page.click(f"header form.lang button[value={lang}]")
        assert html.get_attribute("lang") == lang
        assert b.page.url.endswith(list_path(order.project) + "mine/"), (
            "the switch returns to the page"
        )
        assert heading.inner_text().strip() == expected
        assert b.page.locator(f"header form.lang button[value={lang}].current").count() == 1


def test_screenshots_of_list_and_card(
    browse: Any, owner: Membership, order: Order, screenshot_dir: Any
) -> None:
    b = browse(locale="ru-RU")
    b.login(owner.user.username, PASSWORD)
    b.goto(list_path(order.project))
    list_png = screenshot_dir / "order-list.png"
    b.page.screenshot(path=str(list_png), full_page=True)
    b.goto(card_path(order))
    card_png = screenshot_dir / "order-card.png"
    b.page.screenshot(path=str(card_png), full_page=True)
    for png in (list_png, card_png):
        width, height = check_png(png)
        assert width == 1280 and height >= 300, (png, width, height)
        assert png.stat().st_size > 5_000, "an almost empty picture"


def test_pages_are_styled(browse: Any, operator: Membership) -> None:
    """The stylesheet every page links is served, and the browser applies it."""
    b = browse()
    b.login(operator.user.username, PASSWORD)
    css = [(url, status, ctype) for url, status, ctype, _ in b.seen.responses if ".css" in url]
    assert css, "no stylesheet requested"
    assert all(status == 200 and ctype.startswith("text/css") for _, status, ctype in css), css
    # callvault.css gives the header a layout; unstyled, a <header> is a plain block.
    assert b.page.locator("header.top").evaluate("e => getComputedStyle(e).display") != "block"


def test_api_docs_load_their_script_and_schema_without_digits(
    browse: Any, operator: Membership, order: Order, phone: tuple[str, str]
) -> None:
    """/api/v1/docs: Swagger's JS and CSS and the OpenAPI JSON, all from this server."""
    do_assign_order(order, operator.user)
    b = browse()
    b.login(operator.user.username, PASSWORD)
    b.page.wait_for_load_state("networkidle")
    first = len(b.seen.responses)
    b.goto("/api/v1/docs")
    b.page.locator("#swagger-ui .info .title").wait_for()
    assert "callvault API" in b.page.locator("#swagger-ui .info .title").inner_text()
    b.page.wait_for_load_state("networkidle")

    seen = b.seen
    assert not seen.errors, seen.errors
    docs = seen.responses[first:]  # the pages before have their own test (styled)
    bad = [(url, status) for url, status, *_ in docs if status >= 400]
    assert not bad, bad
    assert {"application/json", "text/css", "text/html"} <= seen.content_types()
    assert any("javascript" in ctype for ctype in seen.content_types()), seen.content_types()
    assert all(url.startswith(b.base_url) for url, *_ in seen.responses), "fetched from outside"
    leaks = find_phone(phone[1], seen)
    assert not leaks, "the number reached the browser:\n" + "\n".join(leaks)
