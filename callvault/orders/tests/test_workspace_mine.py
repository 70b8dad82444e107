"""My orders, /p/<slug>/orders/mine/: the orders in the member's hands, and no others."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callvault.accounts.models import Membership, Project, Role
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_assign_order, do_change_status
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import HttpsClient, assert_no_digits, reveal_e164
from callvault.orders.tests.workspace_support import card_url, login, new_order, url, whole_day
from conftest import make_member


def orders_of(project: Project, count: int, rng) -> list[Order]:
    numbers = fake_phone_numbers(count, rng)
    return [new_order(project, raw, name=f"Customer {i}") for i, raw in enumerate(numbers)]


def test_it_sends_anonymous_visitors_to_login(project: Project) -> None:
    assert HttpsClient().get(url("mine"))["Location"].startswith("/accounts/login/")


def test_it_is_not_there_for_an_outsider(outsider: Membership) -> None:
    assert login(outsider).get(url("mine")).status_code == 404


def test_it_lists_the_held_order_and_open_assigned_ones_but_not_others(
    operator: Membership, project: Project, rng
) -> None:
    whole_day(project)
    held, assigned, finished, colleagues, unassigned = orders_of(project, 5, rng)
    Order.objects.exclude(pk=held.pk).update(in_queue=False)  # the queue hands out `held`
    login(operator).post(url("next"))
    do_assign_order(assigned, operator.user)
    do_assign_order(finished, operator.user)
    do_change_status(finished, Status.objects.get(project=project, code="accepted"))
    do_assign_order(colleagues, make_member(project, "olga", Role.OPERATOR).user)

    response = login(operator).get(url("mine"))
    assert response.status_code == 200
    shown = [row["order"] for row in response.context["rows"]]
    assert shown == [held, assigned]  # the one in hand first
    page = response.content.decode()
    assert card_url(held) in page and card_url(assigned) in page
    for hidden in (finished, colleagues, unassigned):
        assert card_url(hidden) not in page
        assert hidden.customer_name not in page


def test_it_shows_the_callback_time_on_the_customers_and_the_operators_clock(
    operator: Membership, order: Order
) -> None:
    # 07:00 UTC is 17:00 in Vladivostok (the customer) and 10:00 in Moscow (the project).
    Order.objects.filter(pk=order.pk).update(
        customer_tz="Asia/Vladivostok",
        next_call_at=datetime(2030, 5, 1, 7, 0, tzinfo=UTC),
        attempts=3,
    )
    do_assign_order(Order.objects.get(pk=order.pk), operator.user)
    response = login(operator).get(url("mine"))
    (row,) = response.context["rows"]
    assert str(row["customer_zone"]) == "Asia/Vladivostok"
    cells = [cell.strip() for cell in response.content.decode().split("<td")]
    when = next(c for c in cells if "Asia/Vladivostok" in c)
    assert "17:00" in when or "5 p.m." in when
    assert "Europe/Moscow" in response.content.decode()
    assert any("10:00" in c or "10 a.m." in c for c in cells)
    assert row["order"].attempts == 3


@pytest.mark.parametrize("role", ["operator"])
def test_it_never_shows_the_digits(
    role: str, request: pytest.FixtureRequest, project: Project, rng
) -> None:
    member: Membership = request.getfixturevalue(role)
    orders = orders_of(project, 3, rng)
    for order in orders:
        do_assign_order(order, member.user)
    page = login(member).get(url("mine")).content.decode()
    assert all(order.phone_masked() in page for order in orders)
    assert_no_digits(page, *(reveal_e164(order) for order in orders))


def test_the_nav_leads_operators_to_my_orders_and_supervisors_to_the_base_too(
    operator: Membership, supervisor: Membership, order: Order
) -> None:
    operator_page = login(operator).get(url("mine")).content.decode()
    assert f'href="{url("mine")}"' in operator_page
    assert f'href="{url("list")}">Orders' not in operator_page
    supervisor_page = login(supervisor).get(url("mine")).content.decode()
    assert f'href="{url("list")}">Orders' in supervisor_page
    assert f'href="{url("mine")}"' in supervisor_page
