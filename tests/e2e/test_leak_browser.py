"""Against bulk leaks in a real browser: the watermark over an operator's pages (seen, faint,
never in the way of a click) and a leaking operator walking through real pages until the
quota stops them, with the owner told through a local webhook.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from callvault.accounts.models import Membership, Project, SecurityNotice
from callvault.audit.models import AuditEvent
from callvault.guard import alerts
from callvault.guard.alerts import (
    do_generate_webhook_secret,
    do_update_alert_rule,
    do_update_guard_settings,
    settings_for,
)
from callvault.guard.models import AlertRule, QuotaKind
from callvault.guard.quotas import do_set_quota
from callvault.guard.tests.conftest import (
    WebhookReceiver,
    signed_json,
    start_receiver,
    stop_receiver,
    working_morning,
)
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def card_path(order: Order) -> str:
    return f"/p/{order.project.slug}/orders/{order.pk}/"


def csp_errors(page: Any) -> list[str]:
    """Console messages the page logs from now on about the Content-Security-Policy."""
    found: list[str] = []
    page.on(
        "console",
        lambda m: found.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return found


# --- Traceable screens ----------------------------------------------------------------------


def test_the_watermark_covers_the_operators_card_faintly_and_lets_clicks_through(
    browse: Any, operator: Membership, project: Project, order: Order
) -> None:
    do_update_guard_settings(settings_for(project), watermark=True)
    do_assign_order(order, operator.user)
    b = browse()
    csp = csp_errors(b.page)
    b.login(operator.user.username, PASSWORD)
    b.goto(card_path(order))

    mark = b.page.locator("div.watermark")
    assert mark.get_attribute("aria-hidden") == "true"
    texts = mark.locator("span").all_inner_texts()
    assert texts and all(
        t.startswith(f"{operator.user.username} · {project.name} · ") for t in texts
    )
    style = mark.evaluate(
        "e => { const s = getComputedStyle(e);"
        " return [s.position, s.pointerEvents, parseFloat(s.opacity), s.zIndex]; }"
    )
    assert style[0] == "fixed" and style[1] == "none"
    assert 0 < style[2] <= 0.2, style
    # It spreads over the whole visible page, and it makes the page no wider or taller.
    box = mark.bounding_box()
    assert box is not None and box["width"] >= 1280 and box["height"] >= 900
    visible = b.page.evaluate(
        "() => Array.from(document.querySelectorAll('div.watermark span')).filter(s => {"
        " const r = s.getBoundingClientRect();"
        " return r.right > 0 && r.bottom > 0 && r.left < innerWidth && r.top < innerHeight;"
        " }).length"
    )
    assert visible >= 8, visible
    assert b.page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    # The comment form under the overlay still takes the click (Playwright refuses to click
    # an element another one covers), and the comment lands.
    button = b.page.locator("form[action$='/comments/'] button[type=submit]").first
    button.scroll_into_view_if_needed()
    center = button.evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === e"
        " || e.contains(document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2)); }"
    )
    assert center, "the watermark is the element under the button's centre"
    b.page.fill("form[action$='/comments/'] textarea", "Customer asked to call after six")
    button.click()
    b.page.wait_for_function(
        "() => document.body.innerText.includes('Customer asked to call after six')"
    )
    assert order.comments.filter(text="Customer asked to call after six").exists()
    assert not csp, csp


def test_no_watermark_for_the_owner_or_while_it_is_off(
    browse: Any, owner: Membership, operator: Membership, project: Project, order: Order
) -> None:
    do_assign_order(order, operator.user)
    b = browse()
    b.login(operator.user.username, PASSWORD)
    b.goto(card_path(order))
    assert b.page.locator("div.watermark").count() == 0

    do_update_guard_settings(settings_for(project), watermark=True)
    other = browse()
    other.login(owner.user.username, PASSWORD)
    other.goto(card_path(order))
    assert other.page.locator("div.watermark").count() == 0
    b.goto(card_path(order))
    assert b.page.locator("div.watermark").count() == 1


# --- The leaking operator -------------------------------------------------------------------

CARD_LIMIT, BURST = 10, 8


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = start_receiver()
    yield found
    stop_receiver(found)


@pytest.fixture
def morning(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The guard's clocks at a working morning; its counters gone afterwards."""
    working_morning(project, monkeypatch)
    yield
    cache.clear()


def test_a_leaking_operator_in_the_browser_is_stopped_and_the_owner_sees_why(
    browse: Any,
    owner: Membership,
    operator: Membership,
    project: Project,
    receiver: WebhookReceiver,
    morning: None,
    monkeypatch: pytest.MonkeyPatch,
    rng: random.Random,
) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", ())
    # The owner's controls: a tight card quota for this member, a burst alert below it, the
    # webhook, and the watermark on operators' screens.
    do_set_quota(project, QuotaKind.CARD_OPEN, CARD_LIMIT, membership=operator, acting=owner)
    rule = AlertRule.objects.get(project=project, kind="cards_burst")
    do_update_alert_rule(rule, threshold=BURST)
    guard = do_update_guard_settings(
        settings_for(project), webhook_url=receiver.url, watermark=True
    )
    secret = do_generate_webhook_secret(guard)
    orders = [
        do_create_order(
            project,
            Lead(phone=phone, name=f"Customer {i}", address="Moscow", items=[LeadItem("TEA", 1)]),
        ).order
        for i, phone in enumerate(fake_phone_numbers(CARD_LIMIT + 2, rng))
    ]
    for order in orders:
        do_assign_order(order, operator.user)

    b = browse()
    b.login(operator.user.username, PASSWORD)
    assert b.page.locator("header nav a", has_text="Exports").count() == 0
    statuses = []
    for order in orders:  # straight from one card address to the next, as fast as it goes
        statuses.append(b.goto(card_path(order)).status)
        if statuses[-1] == 200:
            assert b.page.locator("div.watermark span").count() > 0
    assert statuses == [200] * CARD_LIMIT + [429] * 2
    assert b.page.locator("main h1").inner_text() == "Quota reached"
    text = b.page.locator("main").inner_text()
    assert "Order cards opened per hour, at most 10" in text
    assert "Customer 11" not in b.page.content()
    # Exports are not there for an operator: the same 404 as for no page.
    assert b.goto(f"/p/{project.slug}/guard/exports/").status == 404

    # The owner's alerts page names bob, with the figures and a link to his timeline.
    o = browse()
    o.login(owner.user.username, PASSWORD)
    o.goto(f"/p/{project.slug}/guard/alerts/")
    burst = o.page.locator("tr[data-kind=cards_burst]")
    reached = o.page.locator("tr[data-kind=quota_reached]")
    assert "bob opened 8 order cards within 10 minutes (alert at 8)." in burst.inner_text()
    assert "bob reached a quota: Order cards opened per hour, 11 of 10." in reached.inner_text()
    link = reached.locator("a[href*='/audit/']")
    with o.page.expect_navigation():
        link.click()
    assert f"/p/{project.slug}/audit/" in o.page.url

    # The record and the webhook agree.
    assert (
        AuditEvent.objects.filter(action="order.view", actor_id=str(operator.user_id)).count()
        == CARD_LIMIT
    )
    assert AuditEvent.objects.filter(action="quota.refused").count() == 2
    assert AuditEvent.objects.filter(action="alert.raised", extra__kind="cards_burst").count() == 1
    kinds = list(
        SecurityNotice.objects.filter(project=project).order_by("pk").values_list("kind", flat=True)
    )
    assert [k for k in kinds if k in ("cards_burst", "quota_reached")] == [
        "cards_burst",
        "quota_reached",
    ]
    posts = [signed_json(r, secret) for r in receiver.wait_for(2)]
    assert [(p["kind"], p["params"]["count"]) for p in posts] == [
        ("cards_burst", BURST),
        ("quota_reached", CARD_LIMIT + 1),
    ]
