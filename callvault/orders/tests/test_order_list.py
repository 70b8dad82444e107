"""The order list page /p/<slug>/orders/: whom it shows what, search, and no digits."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import ActorKind, AuditEvent
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders import lists
from callvault.orders.actions import do_assign_order, do_change_status
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.lists import Cursor
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import (
    HttpsClient,
    assert_no_digits,
    event_text,
    login,
    reveal_e164,
    styles_of,
)
from callvault.vault.keyring import KeyRing
from conftest import make_member

if TYPE_CHECKING:
    from callvault.orders.tests.support import Response

Phone = tuple[str, str]
URL = "/p/alpha/orders/"


def make_orders(project: Project, count: int, rng: random.Random) -> list[Order]:
    return [
        do_create_order(project, Lead(phone=typed, items=[LeadItem("TEA")])).order
        for typed in fake_phone_numbers(count, rng)
    ]


def listed(response: Response) -> set[int]:
    """The ids of the orders the page links to (any project's, so a leak would show)."""
    assert response.status_code == 200
    page = response.content.decode()
    return {o.pk for o in Order.objects.all() if f'href="/p/alpha/orders/{o.pk}/"' in page}


def test_it_sends_anonymous_visitors_to_login(order: Order) -> None:
    response = HttpsClient().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_hides_the_project_from_an_outsider(outsider: Membership, order: Order) -> None:
    assert login(outsider).get(URL).status_code == 404


@pytest.mark.parametrize("role", ["operator"])
def test_an_operator_sees_only_orders_assigned_to_them(
    role: str, request: pytest.FixtureRequest, project: Project, rng: random.Random
) -> None:
    member: Membership = request.getfixturevalue(role)
    mine, theirs, _unassigned = make_orders(project, 3, rng)
    do_assign_order(mine, member.user)
    colleague = request.getfixturevalue("operator" if role == "trainee" else "trainee")
    do_assign_order(theirs, colleague.user)
    assert listed(login(member).get(URL)) == {mine.pk}


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_an_operator_may_not_search(
    role: str, request: pytest.FixtureRequest, order: Order
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, member.user)
    response = login(member).post(URL, {"q": str(order.number)})
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="order.search").exists()


def test_a_supervisor_sees_every_order(
    supervisor: Membership, operator: Membership, project: Project, rng: random.Random
) -> None:
    orders = make_orders(project, 3, rng)
    do_assign_order(orders[0], operator.user)
    assert listed(login(supervisor).get(URL)) == {o.pk for o in orders}


def test_a_supervisor_does_not_see_another_projects_orders(
    supervisor: Membership, project: Project, other_project: Project, rng: random.Random
) -> None:
    mine = make_orders(project, 1, rng)
    make_orders(other_project, 2, rng)
    assert listed(login(supervisor).get(URL)) == {mine[0].pk}


def test_a_supervisor_filters_by_status(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    first, second = make_orders(project, 2, rng)
    do_change_status(second, Status.objects.get(project=project, code="accepted"))
    client = login(supervisor)
    assert listed(client.get(URL, {"status": "accepted"})) == {second.pk}
    assert listed(client.get(URL, {"status": "new"})) == {first.pk}


@pytest.mark.parametrize("style", [0, 2, 3, 4])
def test_a_supervisor_finds_an_order_by_phone_in_another_format(
    style: int, supervisor: Membership, order: Order, phone: Phone, project: Project
) -> None:
    # The order was taken in style 1; another number must not match.
    other = f"+1 {phone[1][2:5]} 555 0{100 + (int(phone[1][-3:]) - 99) % 100}"
    do_create_order(project, Lead(phone=other))
    response = login(supervisor).post(URL, {"q": styles_of(phone[1])[style]})
    assert listed(response) == {order.pk}


@pytest.mark.parametrize("prefix", ["", "#"])
def test_a_supervisor_finds_an_order_by_number(
    prefix: str, supervisor: Membership, project: Project, rng: random.Random
) -> None:
    orders = make_orders(project, 3, rng)
    response = login(supervisor).post(URL, {"q": f"{prefix}{orders[1].number}"})
    assert listed(response) == {orders[1].pk}


def test_a_phone_search_is_recorded_without_digits(
    supervisor: Membership, order: Order, phone: Phone, project: Project
) -> None:
    login(supervisor).post(URL, {"q": styles_of(phone[1])[3]})
    event = AuditEvent.objects.get(action="order.search")
    assert event.project_id == project.pk
    assert event.actor_kind == ActorKind.MEMBER
    assert event.actor_id == str(supervisor.user_id)
    assert event.extra == {"kind": "phone", "results": 1}
    assert_no_digits(event_text(event), phone[1])


def test_a_phone_typed_as_bare_digits_is_recorded_as_a_phone_search(
    supervisor: Membership, order: Order, phone: Phone
) -> None:
    digits_only = "".join(ch for ch in styles_of(phone[1])[4] if ch.isdigit())
    response = login(supervisor).post(URL, {"q": digits_only})
    assert listed(response) == {order.pk}
    assert AuditEvent.objects.get(action="order.search").extra == {"kind": "phone", "results": 1}


def test_a_number_search_is_recorded_as_such(supervisor: Membership, order: Order) -> None:
    login(supervisor).post(URL, {"q": f"#{order.number}"})
    assert AuditEvent.objects.get(action="order.search").extra == {"kind": "number", "results": 1}


def test_a_search_for_something_else_shows_an_error(supervisor: Membership, order: Order) -> None:
    response = login(supervisor).post(URL, {"q": "Ivan"})
    assert listed(response) == set()
    assert response.context["search_error"]


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_no_list_page_shows_the_digits(
    role: str, request: pytest.FixtureRequest, project: Project, rng: random.Random
) -> None:
    member: Membership = request.getfixturevalue(role)
    orders = make_orders(project, 3, rng)
    for order in orders:
        do_assign_order(order, member.user)
    response = login(member).get(URL)
    assert listed(response) == {o.pk for o in orders}
    assert_no_digits(response.content.decode(), *(reveal_e164(o) for o in orders))


def test_a_search_by_number_shows_no_digits(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    orders = make_orders(project, 3, rng)
    response = login(supervisor).post(URL, {"q": str(orders[0].number)})
    assert listed(response) == {orders[0].pk}
    assert_no_digits(response.content.decode(), *(reveal_e164(o) for o in orders))


def test_a_phone_search_does_not_echo_the_digits(
    supervisor: Membership, order: Order, phone: Phone
) -> None:
    response = login(supervisor).post(URL, {"q": styles_of(phone[1])[4]})
    assert listed(response) == {order.pk}
    assert_no_digits(response.content.decode(), phone[1])
    assert "***" in response.context["query"]  # the box shows the number masked


def test_a_search_is_not_a_get_parameter(supervisor: Membership, order: Order) -> None:
    response = login(supervisor).get(URL, {"q": str(order.number)})
    assert response.context["query"] == ""
    assert not AuditEvent.objects.filter(action="order.search").exists()


# --- paging -----------------------------------------------------------------------------


def created_at(order: Order, when: datetime) -> Order:
    """Move an order's creation time (auto_now_add cannot be set on create)."""
    Order.objects.filter(pk=order.pk).update(created_at=when)
    order.refresh_from_db()
    return order


def test_it_pages_older_and_newer_orders(
    supervisor: Membership, project: Project, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lists, "PAGE_SIZE", 2)
    orders = make_orders(project, 3, rng)
    client = login(supervisor)
    first = client.get(URL)
    assert listed(first) == {orders[2].pk, orders[1].pk}
    assert first.context["newer"] is None
    assert first.context["older"] == Cursor.of(orders[1])
    second = client.get(URL, {"before": str(first.context["older"])})
    assert listed(second) == {orders[0].pk}
    assert second.context["older"] is None
    assert second.context["newer"] == Cursor.of(orders[0])
    back = client.get(URL, {"after": str(second.context["newer"])})
    assert [o.pk for o, _ in back.context["rows"]] == [orders[2].pk, orders[1].pk]
    assert back.context["newer"] is None
    assert back.context["older"] == Cursor.of(orders[1])


def test_newest_first_means_by_creation_time(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    # Ids follow insertion, not creation (imports, clock steps): the list follows created_at.
    first, second, third = make_orders(project, 3, rng)
    created_at(first, timezone.now() + timedelta(minutes=5))
    response = login(supervisor).get(URL)
    assert [o.pk for o, _ in response.context["rows"]] == [first.pk, third.pk, second.pk]


def test_orders_created_in_the_same_instant_are_each_shown_once(
    supervisor: Membership, project: Project, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lists, "PAGE_SIZE", 2)
    instant = timezone.now().replace(microsecond=123456)
    orders = [created_at(o, instant) for o in make_orders(project, 5, rng)]
    client = login(supervisor)
    seen: list[int] = []
    params: dict[str, str] = {}
    for _page in range(5):
        response = client.get(URL, params)
        seen += [o.pk for o, _ in response.context["rows"]]
        if response.context["older"] is None:
            break
        params = {"before": str(response.context["older"])}
    assert seen == sorted((o.pk for o in orders), reverse=True)


@pytest.mark.parametrize("cursor", ["abc", "1_", "_1", "-5_3", "1.5_2", "9" * 40 + "_1"])
def test_a_malformed_cursor_shows_the_newest_orders(
    cursor: str, supervisor: Membership, order: Order
) -> None:
    response = login(supervisor).get(URL, {"before": cursor})
    assert listed(response) == {order.pk}


def test_the_pager_keeps_the_filters(
    supervisor: Membership, project: Project, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lists, "PAGE_SIZE", 1)
    make_orders(project, 2, rng)
    response = login(supervisor).get(URL, {"status": "new", "duplicates": "none"})
    older = response.context["older"]
    assert f'href="?status=new&amp;duplicates=none&amp;before={older}"' in response.content.decode()


def test_a_page_counts_nothing(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    make_orders(project, 3, rng)
    client = login(supervisor)
    with CaptureQueriesContext(connection) as queries:
        client.get(URL, {"status": "new", "before": f"{10**16}_{10**9}"})
    assert not [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


# --- filters ----------------------------------------------------------------------------


def test_a_supervisor_filters_by_status_group(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    accepted, cancelled, unreachable, _new = make_orders(project, 4, rng)
    status = {s.code: s for s in Status.objects.filter(project=project)}
    do_change_status(accepted, status["accepted"])
    do_change_status(cancelled, status["cancelled"], reason="changed their mind")
    do_change_status(unreachable, status["unreachable"])
    client = login(supervisor)
    assert listed(client.get(URL, {"group": "cancelled"})) == {cancelled.pk, unreachable.pk}
    assert listed(client.get(URL, {"group": "accepted"})) == {accepted.pk}
    assert listed(client.get(URL, {"group": "returned"})) == set()


def test_dates_are_days_in_the_projects_time_zone(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    Project.objects.filter(pk=project.pk).update(time_zone="Asia/Tokyo")  # UTC+9, no DST
    tokyo = ZoneInfo("Asia/Tokyo")
    late, early, last, next_day = make_orders(project, 4, rng)
    created_at(late, datetime(2026, 3, 9, 23, 59, 59, tzinfo=tokyo))
    created_at(early, datetime(2026, 3, 10, 0, 0, tzinfo=tokyo))  # 2026-03-09 15:00 UTC
    created_at(last, datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=tokyo))
    created_at(next_day, datetime(2026, 3, 11, 0, 0, tzinfo=tokyo))
    client = login(supervisor)
    day = {"date_from": "2026-03-10", "date_to": "2026-03-10"}
    assert listed(client.get(URL, day)) == {early.pk, last.pk}
    assert listed(client.get(URL, {"date_from": "2026-03-10"})) == {early.pk, last.pk, next_day.pk}
    assert listed(client.get(URL, {"date_to": "2026-03-09"})) == {late.pk}
    page = client.get(URL, day).content.decode()
    assert "00:00" in page  # shown in the project's time zone, not the server's


def test_an_end_before_the_start_is_an_error(supervisor: Membership, order: Order) -> None:
    response = login(supervisor).get(URL, {"date_from": "2100-03-10", "date_to": "2100-03-01"})
    assert response.context["form"].errors["date_to"]
    assert listed(response) == set()  # the valid start still applies


@pytest.mark.parametrize("bad", ["0001-01-01", "9999-12-31", "2026-02-30", "yesterday"])
def test_a_date_out_of_range_is_an_error_not_a_crash(
    bad: str, supervisor: Membership, order: Order
) -> None:
    response = login(supervisor).get(URL, {"date_from": bad, "date_to": bad})
    assert set(response.context["form"].errors) == {"date_from", "date_to"}
    assert listed(response) == {order.pk}


def test_the_date_picker_gets_iso_dates_in_russian_too(supervisor: Membership) -> None:
    client = login(supervisor)
    client.cookies["django_language"] = "ru"
    page = client.get(URL, {"date_from": "2026-03-10"}).content.decode()
    assert 'value="2026-03-10"' in page


def test_a_supervisor_filters_by_operator(
    supervisor: Membership,
    operator: Membership,
    trainee: Membership,
    project: Project,
    rng: random.Random,
) -> None:
    bobs, tinas, nobodys = make_orders(project, 3, rng)
    do_assign_order(bobs, operator.user)
    do_assign_order(tinas, trainee.user)
    client = login(supervisor)
    assert listed(client.get(URL, {"operator": operator.user_id})) == {bobs.pk}
    assert listed(client.get(URL, {"operator": trainee.user_id})) == {tinas.pk}
    assert listed(client.get(URL, {"operator": "none"})) == {nobodys.pk}


def test_the_operator_filter_offers_only_the_projects_members(
    supervisor: Membership, operator: Membership, outsider: Membership, order: Order
) -> None:
    client = login(supervisor)
    page = client.get(URL)
    choices = dict(page.context["form"].fields["operator"].choices)
    assert str(operator.user_id) in choices
    assert str(outsider.user_id) not in choices
    response = client.get(URL, {"operator": outsider.user_id})
    assert response.context["form"].errors["operator"]


def test_a_supervisor_filters_by_source(
    supervisor: Membership, project: Project, rng: random.Random
) -> None:
    landing, partner, _none = (
        do_create_order(project, Lead(phone=typed, source=source)).order
        for typed, source in zip(
            fake_phone_numbers(3, rng), ["landing-a", "partner-b", ""], strict=True
        )
    )
    client = login(supervisor)
    assert listed(client.get(URL, {"source": "landing-a"})) == {landing.pk}
    assert listed(client.get(URL, {"source": " partner-b "})) == {partner.pk}
    assert listed(client.get(URL, {"source": "landing"})) == set()  # exact, not a prefix


def test_a_supervisor_filters_duplicates(
    supervisor: Membership, project: Project, order: Order, phone: Phone, rng: random.Random
) -> None:
    duplicate = do_create_order(project, Lead(phone=phone[0])).order
    assert duplicate.duplicate_of_id == order.pk
    (other,) = make_orders(project, 1, rng)
    client = login(supervisor)
    assert listed(client.get(URL, {"duplicates": "only"})) == {duplicate.pk}
    assert listed(client.get(URL, {"duplicates": "none"})) == {order.pk, other.pk}
    assert listed(client.get(URL)) == {order.pk, duplicate.pk, other.pk}


def test_filters_combine(
    supervisor: Membership, operator: Membership, project: Project, rng: random.Random
) -> None:
    accepted_bob, new_bob, accepted_nobody = make_orders(project, 3, rng)
    accepted = Status.objects.get(project=project, code="accepted")
    for order in (accepted_bob, new_bob):
        do_assign_order(order, operator.user)
    do_change_status(Order.objects.get(pk=accepted_bob.pk), accepted)
    do_change_status(accepted_nobody, accepted)
    params: dict[str, str | int] = {
        "group": "accepted",
        "operator": operator.user_id,
        "duplicates": "none",
    }
    assert listed(login(supervisor).get(URL, params)) == {accepted_bob.pk}


@pytest.mark.parametrize("role", ["operator"])
def test_an_operator_gets_only_the_status_filter(
    role: str, request: pytest.FixtureRequest, project: Project, rng: random.Random
) -> None:
    member: Membership = request.getfixturevalue(role)
    mine, _theirs = make_orders(project, 2, rng)
    do_assign_order(mine, member.user)
    response = login(member).get(URL, {"operator": "none", "source": "x", "duplicates": "only"})
    assert list(response.context["form"].fields) == ["status"]
    assert listed(response) == {mine.pk}


# --- cost -------------------------------------------------------------------------------


def test_the_list_does_not_grow_queries_with_rows(
    supervisor: Membership,
    operator: Membership,
    trainee: Membership,
    project: Project,
    rng: random.Random,
    django_assert_max_num_queries: Any,
) -> None:
    for order in make_orders(project, 5, rng):
        do_assign_order(order, operator.user)
    client = login(supervisor)
    client.get(URL)
    with CaptureQueriesContext(connection) as baseline:
        client.get(URL)
    for i, order in enumerate(make_orders(project, 55, rng)):
        do_assign_order(order, (operator if i % 2 else trainee).user)
    make_member(project, "olga", Role.OPERATOR)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        response = client.get(URL)
    assert len(listed(response)) == lists.PAGE_SIZE
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        client.get(URL, {"group": "processing", "before": str(response.context["older"])})


def test_the_list_never_opens_the_vault(
    supervisor: Membership, project: Project, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = make_orders(project, 3, rng)

    def no_keys(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the list must show the stored mask, not decrypt")

    monkeypatch.setattr(KeyRing, "aead", no_keys)
    response = login(supervisor).get(URL)
    masks = [masked for _, masked in response.context["rows"]]
    assert masks == [o.phone_masked() for o in reversed(orders)]
    assert all(mask.startswith("+1 ") and "*" in mask for mask in masks)
