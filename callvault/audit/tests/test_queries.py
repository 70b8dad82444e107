"""The audit query helpers: each filter narrows, pages cover everything once, projects apart."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext

from callvault.accounts.models import Project
from callvault.audit import queries
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.queries import (
    EventFilter,
    actor_day,
    events_for_object,
    new_ips,
    page_of,
    parse_ip_filter,
    search,
)
from callvault.audit.tests.viewer_support import ahead, event

BASE = {"id": 0}


@pytest.fixture(autouse=True)
def _after_the_fixtures(project: Project, other_project: Project) -> None:
    # Creating the projects recorded events of their own; the tests count only theirs.
    BASE["id"] = AuditEvent.objects.aggregate(m=Max("id"))["m"] or 0


def ids(project: Project, **filters: Any) -> set[int]:
    return {e.pk for e in search(project.pk, EventFilter(**filters)) if e.pk > BASE["id"]}


def test_it_never_returns_another_projects_events(project: Project, other_project: Project) -> None:
    mine = event(project.pk)
    event(other_project.pk)
    event(None, action="vault.rotate")
    assert ids(project) == {mine.pk}
    assert events_for_object(project.pk, "order", "1").rows == [mine]
    assert events_for_object(other_project.pk, "order", "1").rows != [mine]


def test_the_member_filter_keeps_only_that_members_actions(project: Project) -> None:
    bob = event(project.pk, actor_id="7")
    event(project.pk, actor_id="8")
    event(project.pk, actor_kind=ActorKind.API_KEY, actor_id="7")
    assert ids(project, actor_kind=ActorKind.MEMBER, actor_id="7") == {bob.pk}


def test_the_action_filter_is_exact_or_a_prefix(project: Project) -> None:
    status = event(project.pk, action="order.status")
    view = event(project.pk, action="order.view")
    reveal = event(project.pk, action="phone.reveal")
    event(project.pk, action="orders.other")
    assert ids(project, action="order.status") == {status.pk}
    assert ids(project, action="order.") == {status.pk, view.pk}
    assert ids(project, action="order.*") == {status.pk, view.pk}
    assert ids(project, action="phone.reveal") == {reveal.pk}
    assert ids(project, action="order") == set()  # not a prefix without the dot


def test_the_object_filter_narrows_by_type_and_id(project: Project) -> None:
    one = event(project.pk, object_type="order", object_id="1")
    event(project.pk, object_type="order", object_id="11")
    user = event(project.pk, object_type="user", object_id="1")
    assert ids(project, object_type="order", object_id="1") == {one.pk}
    assert ids(project, object_type="user") == {user.pk}


def test_the_ip_filter_takes_an_address_or_an_ipv4_network(project: Project) -> None:
    a = event(project.pk, ip="10.1.2.3")
    b = event(project.pk, ip="10.1.200.9")
    c = event(project.pk, ip="10.2.0.1")
    event(project.pk, ip="2001:db8::1")
    event(project.pk, ip=None)
    assert ids(project, ip=parse_ip_filter("10.1.2.3")) == {a.pk}
    assert ids(project, ip=parse_ip_filter("10.1.0.0/16")) == {a.pk, b.pk}
    assert ids(project, ip=parse_ip_filter("10.0.0.0/8")) == {a.pk, b.pk, c.pk}
    # Text order would put 10.1.200.9 between 10.1.2.3 and 10.1.3.0; numbers do not.
    assert ids(project, ip=parse_ip_filter("10.1.2.0/24")) == {a.pk}
    assert ids(project, ip=parse_ip_filter("10.1.2.3/32")) == {a.pk}


def test_the_ip_filter_takes_an_ipv6_address_or_network(project: Project) -> None:
    a = event(project.pk, ip="2001:db8:1::5")
    b = event(project.pk, ip="2001:db8:1:ffff::1")
    c = event(project.pk, ip="2001:db8:2::1")
    event(project.pk, ip="10.0.0.1")
    assert ids(project, ip=parse_ip_filter("2001:db8:1::5")) == {a.pk}
    assert ids(project, ip=parse_ip_filter("2001:DB8:1:0::5")) == {a.pk}  # normalised
    assert ids(project, ip=parse_ip_filter("2001:db8:1::/48")) == {a.pk, b.pk}
    assert ids(project, ip=parse_ip_filter("2001:db8::/32")) == {a.pk, b.pk, c.pk}


def test_it_refuses_what_is_not_an_address(project: Project) -> None:
    assert parse_ip_filter("10.0.0.300") is None
    assert parse_ip_filter("10.0.0.0/33") is None
    assert parse_ip_filter("'; DROP TABLE x; --") is None


def test_the_date_range_is_half_open(project: Project) -> None:
    _day, since = ahead(ZoneInfo("Europe/Moscow"))
    event(project.pk, created_at=since - timedelta(seconds=1))
    inside = event(project.pk, created_at=since)
    last = event(project.pk, created_at=since + timedelta(days=1, seconds=-1))
    event(project.pk, created_at=since + timedelta(days=1))
    assert ids(project, since=since, until=since + timedelta(days=1)) == {inside.pk, last.pk}


def test_pages_return_every_event_exactly_once(project: Project) -> None:
    made = [event(project.pk).pk for _ in range(23)]
    seen: list[int] = []
    before = None
    for _ in range(10):
        page = page_of(search(project.pk, EventFilter(object_type="order")), before, size=5)
        seen += [e.pk for e in page.rows]
        before = page.next_before
        if before is None:
            break
    assert seen == sorted(made, reverse=True)


def test_a_full_last_page_has_no_next_cursor(project: Project) -> None:
    for _ in range(10):
        event(project.pk)
    only = EventFilter(object_type="order")
    first = page_of(search(project.pk, only), None, size=5)
    second = page_of(search(project.pk, only), first.next_before, size=5)
    assert len(second.rows) == 5 and second.next_before is None


def test_new_ips_are_those_not_used_in_the_30_days_before(project: Project) -> None:
    _day, day = ahead(UTC)
    event(project.pk, actor_id="7", ip="10.0.0.2", created_at=day - timedelta(days=31))
    event(project.pk, actor_id="7", ip="10.0.0.1", created_at=day - timedelta(days=3))
    event(project.pk, actor_id="8", ip="10.0.0.3", created_at=day - timedelta(days=1))
    fresh = new_ips(project.pk, "member", "7", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], day)
    assert fresh == {"10.0.0.2", "10.0.0.3"}


@pytest.mark.parametrize("recent", [0, 4], ids=["the month at once", "4 days first"])
def test_new_ips_are_found_whatever_the_split(
    project: Project, other_project: Project, monkeypatch: pytest.MonkeyPatch, recent: int
) -> None:
    monkeypatch.setattr(queries, "IP_RECENT", timedelta(days=recent))
    _day, day = ahead(UTC)
    # In time order, as events are written (ids follow time: see queries.in_time).
    event(project.pk, actor_id="7", ip="10.0.0.1", created_at=day - timedelta(days=29))
    event(project.pk, actor_id="7", ip="2001:db8::1", created_at=day - timedelta(days=2))
    event(other_project.pk, actor_id="7", ip="10.0.0.4", created_at=day - timedelta(days=1))
    event(project.pk, actor_id="8", ip="10.0.0.5", created_at=day - timedelta(days=1))
    event(project.pk, actor_id="7", ip="10.0.0.2", created_at=day - timedelta(minutes=1))
    event(project.pk, actor_id="7", ip="10.0.0.3", created_at=day + timedelta(hours=1))
    asked = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "2001:db8::1"]
    fresh = new_ips(project.pk, "member", "7", asked, day)
    # Used only that day, or in another project, or by someone else: new.
    assert fresh == {"10.0.0.3", "10.0.0.4", "10.0.0.5"}


def lookups(run: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in run.captured_queries if '"audit_auditevent"."ip"' in q["sql"]]


def test_the_days_just_before_settle_a_usual_day_and_the_rest_is_read_for_the_others(
    project: Project,
) -> None:
    # Reading the whole month for a day's addresses read every event of it (13,418 rows in
    # the benchmark). The days just before are read first, and usually settle them all.
    _day, day = ahead(UTC)
    event(project.pk, actor_id="7", ip="10.0.0.9", created_at=day - timedelta(days=20))
    event(project.pk, actor_id="7", ip="10.0.0.1", created_at=day - timedelta(days=3))
    with CaptureQueriesContext(connection) as known:
        assert new_ips(project.pk, "member", "7", ["10.0.0.1"], day) == set()
    (sql,) = lookups(known)
    assert str((day - timedelta(days=4)).date()) in sql

    # The others are looked for in the rest of the window, and only they.
    with CaptureQueriesContext(connection) as rest:
        fresh = new_ips(project.pk, "member", "7", ["10.0.0.1", "10.0.0.2", "10.0.0.9"], day)
    assert fresh == {"10.0.0.2"}
    _recent, others = lookups(rest)
    assert str((day - timedelta(days=30)).date()) in others and "10.0.0.1" not in others


def test_a_day_lists_the_actors_events_in_time_order(project: Project) -> None:
    _day, day = ahead(UTC)
    first = event(project.pk, actor_id="7", created_at=day + timedelta(hours=1))
    event(project.pk, actor_id="8", created_at=day + timedelta(hours=1))
    second = event(project.pk, actor_id="7", created_at=day + timedelta(hours=2))
    event(project.pk, actor_id="7", created_at=day + timedelta(days=1))
    line = actor_day(project.pk, "member", "7", day, day + timedelta(days=1))
    assert [e.pk for e in line.rows] == [first.pk, second.pk]
    assert line.new_ips == {"198.51.100.1"}


def test_the_date_range_keeps_events_written_a_little_out_of_time_order(project: Project) -> None:
    # Ids follow insertion, times are stamped just before: near the edges of a range they
    # disagree a little, and the id bounds on PostgreSQL must not drop such an event.
    _day, edge = ahead(UTC)
    event(project.pk, created_at=edge - timedelta(hours=3))
    late = event(project.pk, created_at=edge + timedelta(minutes=5))
    early = event(project.pk, created_at=edge - timedelta(minutes=20))  # inserted after `late`
    inside = event(project.pk, created_at=edge + timedelta(minutes=1))
    after = event(project.pk, created_at=edge + timedelta(hours=3))
    assert ids(project, since=edge) == {late.pk, inside.pk, after.pk}
    assert ids(project, since=edge - timedelta(minutes=30), until=edge + timedelta(minutes=2)) == {
        early.pk,
        inside.pk,
    }
    assert ids(project, until=edge) == ids(project) - {late.pk, inside.pk, after.pk}
