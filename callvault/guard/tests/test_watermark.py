"""Traceable screens: the faint watermark with the viewer's name, the project and the time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.http import HttpRequest
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.guard import watermark
from callvault.guard.alerts import do_update_guard_settings, settings_for
from callvault.guard.watermark import TILES, Watermark, watermark_for
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, login

OVERLAY = re.compile(r'<div class="watermark"[^>]*>(.*?)</div>', re.S)
TEXT = re.compile(r"<span>(.*?)</span>", re.S)


def set_watermark(project: Project, on: bool) -> None:
    """The owner's switch on the leak-controls page."""
    do_update_guard_settings(settings_for(project), watermark=on)


def overlay(html: str) -> str | None:
    """The watermark's HTML on the page, or None."""
    match = OVERLAY.search(html)
    return match.group(0) if match else None


def texts(html: str) -> list[str]:
    """The repeated texts of the page's watermark."""
    found = overlay(html)
    return TEXT.findall(found) if found else []


def card(member: Membership, order: Order) -> str:
    response = login(member).get(f"/p/{order.project.slug}/orders/{order.pk}/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def marked(project: Project) -> Project:
    set_watermark(project, True)
    return project


def test_an_operators_card_carries_their_name_the_project_and_the_time(
    marked: Project, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    before = timezone.now().replace(microsecond=0)
    html = card(operator, order)
    after = timezone.now()
    lines = texts(html)
    assert len(lines) == TILES and len(set(lines)) == 1
    who, project_name, moment = lines[0].split(" · ")
    assert who == "bob" and project_name == "Shop alpha"
    shown = datetime.strptime(moment, "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=ZoneInfo(marked.time_zone)
    )
    assert before <= shown <= after


def test_the_full_name_is_shown_escaped_next_to_the_username(
    marked: Project, operator: Membership, order: Order
) -> None:
    operator.user.first_name, operator.user.last_name = "Bob", "<b>Smith</b>"
    operator.user.save()
    do_assign_order(order, operator.user)
    line = texts(card(operator, order))[0]
    assert line.startswith("bob (Bob &lt;b&gt;Smith&lt;/b&gt;) · Shop alpha · ")


def test_the_time_is_the_projects_clock(
    marked: Project, operator: Membership, order: Order
) -> None:
    marked.time_zone = "Asia/Vladivostok"
    marked.save()
    do_assign_order(order, operator.user)
    moment = texts(card(operator, order))[0].rsplit(" · ", 1)[1]
    shown = datetime.strptime(moment, "%Y-%m-%d %H:%M:%S")
    local_now = timezone.localtime(timezone.now(), ZoneInfo("Asia/Vladivostok"))
    assert abs(local_now.replace(tzinfo=None) - shown) < timedelta(minutes=1)


def test_the_overlay_is_hidden_from_screen_readers_and_has_no_inline_style(
    marked: Project, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    found = overlay(card(operator, order))
    assert found is not None
    assert found.startswith('<div class="watermark" aria-hidden="true">')
    assert "style=" not in found and "<script" not in found and " on" not in found


def test_nothing_is_marked_while_the_owner_has_it_off(
    project: Project, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    assert overlay(card(operator, order)) is None
    set_watermark(project, True)
    assert overlay(card(operator, order)) is not None
    set_watermark(project, False)
    assert overlay(card(operator, order)) is None


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_the_roles_that_work_the_queue_are_marked(
    role: str, request: pytest.FixtureRequest, marked: Project
) -> None:
    member: Membership = request.getfixturevalue(role)
    response = login(member).get("/p/alpha/orders/mine/")
    assert response.status_code == 200
    lines = texts(response.content.decode())
    assert lines and lines[0].startswith(f"{member.user.username} · ")


@pytest.mark.parametrize("role", ["owner", "supervisor"])
def test_owners_and_supervisors_are_not_marked(
    role: str, request: pytest.FixtureRequest, marked: Project, order: Order
) -> None:
    member: Membership = request.getfixturevalue(role)
    assert overlay(card(member, order)) is None


def test_it_names_only_the_viewer(
    marked: Project, owner: Membership, supervisor: Membership, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    found = overlay(card(operator, order)) or ""
    assert "bob" in found
    for other in ("alice", "sam", "tina", "Ivan"):
        assert other not in found


@pytest.mark.parametrize("page", ["mine", "card"])
def test_every_project_page_of_the_operator_is_marked(
    page: str, marked: Project, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    url = {"mine": "/p/alpha/orders/mine/", "card": f"/p/alpha/orders/{order.pk}/"}[page]
    response = login(operator).get(url)
    assert response.status_code == 200
    assert texts(response.content.decode())


def test_the_setting_of_another_project_does_not_mark_this_one(
    project: Project, other_project: Project, operator: Membership, order: Order
) -> None:
    set_watermark(other_project, True)
    do_assign_order(order, operator.user)
    assert overlay(card(operator, order)) is None


def test_pages_outside_a_project_and_anonymous_pages_are_not_marked(
    marked: Project, operator: Membership
) -> None:
    assert overlay(HttpsClient().get("/accounts/login/").content.decode()) is None
    assert overlay(login(operator).get("/").content.decode()) is None


def test_an_outsider_gets_the_same_404_and_no_mark(
    marked: Project, outsider: Membership, order: Order
) -> None:
    response = login(outsider).get(f"/p/alpha/orders/{order.pk}/")
    assert response.status_code == 404
    assert overlay(response.content.decode()) is None


def test_the_mark_costs_one_query_and_none_outside_a_project(
    marked: Project,
    operator: Membership,
    order: Order,
    django_assert_max_num_queries: Any,
) -> None:
    do_assign_order(order, operator.user)
    request = login(operator).get(f"/p/alpha/orders/{order.pk}/").wsgi_request
    with django_assert_max_num_queries(1):
        assert watermark_for(request) is not None
    request.resolver_match = None
    with django_assert_max_num_queries(0):
        assert watermark_for(request) is None


@pytest.mark.parametrize(("role", "looked_up"), [("supervisor", 0), ("owner", 0), ("operator", 1)])
def test_only_marked_roles_pay_the_query(
    role: str,
    looked_up: int,
    request: pytest.FixtureRequest,
    marked: Project,
    order: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, member.user)
    calls: list[HttpRequest] = []

    def counted(request: HttpRequest) -> Watermark | None:
        calls.append(request)
        return watermark_for(request)

    monkeypatch.setattr(watermark, "watermark_for", counted)
    card(member, order)
    assert len(calls) == looked_up
