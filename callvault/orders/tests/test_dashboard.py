"""The dashboard /p/<slug>/orders/dashboard/: who may see it, and every figure of a known day."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.context import acting_as
from callvault.audit.middleware import member_actor
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_assign_order, do_change_status
from callvault.orders.dashboard import Dashboard, OperatorDay, build_dashboard, day_start
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order, Status, StatusChange
from callvault.orders.queue import do_record_no_answer, do_schedule_callback
from callvault.orders.tests.support import HttpsClient, login
from conftest import make_member

URL = "/p/alpha/orders/dashboard/"


def test_it_sends_anonymous_visitors_to_login(project: Project) -> None:
    response = HttpsClient().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_hides_the_project_from_an_outsider(outsider: Membership, project: Project) -> None:
    assert login(outsider).get(URL).status_code == 404


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_members_who_may_not_see_all_orders_get_404(
    role: str, request: pytest.FixtureRequest
) -> None:
    member: Membership = request.getfixturevalue(role)
    assert login(member).get(URL).status_code == 404


@pytest.mark.parametrize("role", ["owner", "supervisor"])
def test_members_who_see_all_orders_get_it_and_a_nav_link(
    role: str, request: pytest.FixtureRequest
) -> None:
    member: Membership = request.getfixturevalue(role)
    response = login(member).get(URL)
    assert response.status_code == 200
    assert f'href="{URL}"' in response.content.decode()


def test_operators_have_no_nav_link(operator: Membership) -> None:
    page = login(operator).get("/p/alpha/orders/").content.decode()
    assert URL not in page


# --- a known day ------------------------------------------------------------------------


def noon_zone() -> str:
    """A fixed-offset zone where it is now between 12:00 and 13:00, so that "today" has
    twelve hours behind it and twelve ahead whenever the test runs."""
    offset = 12 - timezone.now().astimezone(ZoneInfo("UTC")).hour  # -11 .. +12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


@dataclass
class Day:
    """The project's data for the day, and the clock it was built against."""

    project: Project
    zone: ZoneInfo
    now: datetime
    members: dict[str, Membership]

    def at(self, hour: int, minute: int = 0, *, days_ago: int = 0) -> datetime:
        """A local time of today (or of an earlier day)."""
        day = self.now.astimezone(self.zone).date() - timedelta(days=days_ago)
        return datetime.combine(day, time(hour, minute), tzinfo=self.zone)


def new_order(project: Project, when: datetime, rng: random.Random) -> Order:
    (typed,) = fake_phone_numbers(1, rng)
    order = do_create_order(project, Lead(phone=typed)).order
    Order.objects.filter(pk=order.pk).update(created_at=when)
    return Order.objects.select_related("status").get(pk=order.pk)


def status(project: Project, code: str) -> Status:
    return Status.objects.get(project=project, code=code)


def change(order: Order, code: str, member: Membership | None, **kwargs: Any) -> Order:
    """A status change as a member (or as the system when member is None)."""
    order = Order.objects.select_related("status").get(pk=order.pk)
    if member is None:
        return do_change_status(order, status(order.project, code), **kwargs)
    with acting_as(member_actor(member.user)):
        return do_change_status(order, status(order.project, code), **kwargs)


def no_answer(order: Order, member: Membership) -> Order:
    order = Order.objects.select_related("status").get(pk=order.pk)
    with acting_as(member_actor(member.user)):
        return do_record_no_answer(order)


def backdate_changes(order: Order, when: datetime) -> None:
    StatusChange.objects.filter(order=order).update(created_at=when)


@pytest.fixture
def day(
    project: Project,
    other_project: Project,
    operator: Membership,
    trainee: Membership,
    supervisor: Membership,
    owner: Membership,
    outsider: Membership,
    rng: random.Random,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Day]:
    """bob and olga work today; tina does nothing; sam (a supervisor) sets one status;
    yesterday's work, the system's changes and another project's day must not count."""
    Project.objects.filter(pk=project.pk).update(time_zone=noon_zone())
    project.refresh_from_db()
    olga = make_member(project, "olga", Role.OPERATOR)
    d = Day(project, ZoneInfo(project.time_zone), timezone.now(), {})
    d.members = {"bob": operator, "olga": olga, "tina": trainee, "sam": supervisor}
    # Leads today: 00:05, three at 9, two at 10, two at 11; two late yesterday.
    hours = [(0, 5), (9, 10), (9, 20), (9, 40), (10, 15), (10, 45), (11, 59), (11, 30)]
    o1, o2, o3, o4, o5, o6, o7, o8 = (new_order(project, d.at(h, m), rng) for h, m in hours)
    y1, y2 = (new_order(project, d.at(23, m, days_ago=1), rng) for m in (10, 20))

    # bob: four orders processed, one approved (o2, then shipped: still one order), one
    # callback due now (o5) and one later (o4).
    change(o2, "accepted", operator)
    change(o2, "shipped", operator)
    change(o3, "cancelled", operator, reason="changed their mind")
    for order in (o4, o5):
        do_assign_order(order, operator.user)
        with acting_as(member_actor(operator.user)):
            do_schedule_callback(
                Order.objects.select_related("status").get(pk=order.pk),
                d.now + timedelta(hours=2),
            )
    Order.objects.filter(pk=o5.pk).update(next_call_at=d.now - timedelta(minutes=5))

    # olga: o6 approved; o7 no answer twice (one status change), o1 no answer once.
    change(o6, "accepted", olga)
    no_answer(o7, olga)
    no_answer(o7, olga)
    no_answer(o1, olga)

    # sam sets a status today on an order bob accepted yesterday.
    change(y1, "accepted", operator)
    backdate_changes(y1, d.at(23, 40, days_ago=1))
    change(y1, "delivered", supervisor)

    # olga's no-answer yesterday: its event and its status change are yesterday's.
    yesterday = d.at(23, 45, days_ago=1)
    with monkeypatch.context() as m:
        m.setattr("django.utils.timezone.now", lambda: yesterday)
        no_answer(y2, olga)
    backdate_changes(y2, yesterday)
    # The system gives up on it today: not anyone's work.
    change(y2, "unreachable", None)

    # tina holds o8 now.
    Order.objects.filter(pk=o8.pk).update(
        locked_by=trainee.user, locked_until=d.now + timedelta(minutes=10)
    )

    # Another project's busy day.
    others = [new_order(other_project, d.at(9), rng) for _ in range(3)]
    change(others[0], "accepted", outsider)
    no_answer(others[1], outsider)
    other_operator = make_member(other_project, "oscar", Role.OPERATOR)
    do_assign_order(others[2], other_operator.user)
    with acting_as(member_actor(other_operator.user)):
        do_schedule_callback(others[2], d.now + timedelta(hours=1))
    Order.objects.filter(pk=others[2].pk).update(next_call_at=d.now - timedelta(minutes=1))
    yield d


def name(row: OperatorDay) -> str:
    assert row.user is not None
    return row.user.username


def figures(row: OperatorDay) -> tuple[int, int, int | None, int, int]:
    return (row.processed, row.approved, row.approval_rate, row.no_answers, row.callbacks_due)


@pytest.fixture
def board(day: Day) -> Dashboard:
    return build_dashboard(day.project)


def test_today_starts_at_midnight_in_the_projects_time_zone(day: Day, board: Dashboard) -> None:
    assert board.day_start == day.at(0, 0)
    assert board.day_start.astimezone(day.zone).hour == 0
    assert day_start(day.project, day.now) == day.at(0, 0)


def test_every_operator_figure_matches_the_day(board: Dashboard) -> None:
    rows = {name(row): figures(row) for row in board.operators}
    assert rows == {
        "bob": (4, 1, 25, 0, 1),
        "olga": (3, 1, 33, 3, 0),
        "sam": (1, 0, 0, 0, 0),
        "tina": (0, 0, None, 0, 0),
    }
    # Busiest first; the owner (no figures, sees all orders) is not an operator row.
    assert [name(row) for row in board.operators] == ["bob", "olga", "sam", "tina"]
    assert figures(board.totals) == (8, 2, 25, 3, 1)


def test_leads_are_counted_by_local_hour(board: Dashboard) -> None:
    expected = [0] * 24
    expected[0], expected[9], expected[10], expected[11] = 1, 3, 2, 2
    assert board.leads_by_hour == expected
    assert board.leads_today == 8


def test_the_queue_is_counted_now(board: Dashboard) -> None:
    # Due and free: o5 (callback whose time came). Held: o8. Later: o1, o7 (no-answer
    # back-off), o4 (callback in two hours). The other project's due orders are not ours.
    assert (board.queue.due, board.queue.held, board.queue.later) == (1, 1, 3)


def test_the_page_shows_the_figures(day: Day, supervisor: Membership) -> None:
    page = login(supervisor).get(URL).content.decode()
    row = page.split('data-user="bob"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td[^>]*>(.*?)</td>", row) == ["bob", "4", "1", "25%", "0", "1"]
    tina = page.split('data-user="tina"', 1)[1].split("</tr>", 1)[0]
    assert "—" in tina
    assert '<dd id="queue-due">1</dd>' in page
    assert '<dd id="leads-today">8</dd>' in page
    assert '<td class="num" data-hour="9">3</td>' in page


def test_a_project_with_nothing_today_shows_zeros(project: Project) -> None:
    board = build_dashboard(project)
    assert board.operators == []
    assert board.leads_by_hour == [0] * 24
    assert (board.queue.due, board.queue.held, board.queue.later) == (0, 0, 0)
    assert board.totals.approval_rate is None


def test_the_dashboard_does_not_grow_queries_with_members_and_orders(
    supervisor: Membership,
    operator: Membership,
    project: Project,
    rng: random.Random,
    django_assert_max_num_queries: Any,
) -> None:
    client = login(supervisor)
    change(new_order(project, timezone.now(), rng), "accepted", operator)
    client.get(URL)
    with CaptureQueriesContext(connection) as baseline:
        client.get(URL)
    for i in range(6):
        member = make_member(project, f"op{i}", Role.OPERATOR)
        for _ in range(3):
            order = new_order(project, timezone.now(), rng)
            do_assign_order(order, member.user)
            if i % 2:
                change(order, "accepted", member)
            else:
                no_answer(order, member)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        response = client.get(URL)
    assert len(response.context["dashboard"].operators) == 7
