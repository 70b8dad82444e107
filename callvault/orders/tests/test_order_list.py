"""The order list page /p/<slug>/orders/: whom it shows what, search, and no digits."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from callvault.accounts.models import Membership, Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders import lists
from callvault.orders.actions import (
    Lead,
    LeadItem,
    do_assign_order,
    do_change_status,
    do_create_order,
)
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import (
    HttpsClient,
    assert_no_digits,
    event_text,
    login,
    reveal_e164,
    styles_of,
)

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


@pytest.mark.parametrize("role", ["operator", "trainee"])
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


@pytest.mark.parametrize("role", ["operator", "trainee", "supervisor"])
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


def test_it_pages_older_orders(
    supervisor: Membership, project: Project, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lists, "PAGE_SIZE", 2)
    orders = make_orders(project, 3, rng)
    client = login(supervisor)
    first = client.get(URL)
    assert listed(first) == {orders[2].pk, orders[1].pk}
    assert first.context["next_before"] == orders[1].pk
    second = client.get(URL, {"before": orders[1].pk})
    assert listed(second) == {orders[0].pk}
    assert second.context["next_before"] is None


def test_the_list_does_not_grow_queries_with_rows(
    supervisor: Membership,
    operator: Membership,
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
    for order in make_orders(project, 35, rng):
        do_assign_order(order, operator.user)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        response = client.get(URL)
    assert len(listed(response)) == 40
