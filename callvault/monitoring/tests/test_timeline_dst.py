"""The days the clocks change: the axis is as long as the local day really is (23 or 25
hours), hour lines stand where those hours begin, and a span and a CRM action of the same
moment sit at the same place (Europe/Berlin: 2025-03-30 forward at 02:00, 2025-10-26 back
at 03:00)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from unittest.mock import patch
from zoneinfo import ZoneInfo

from django.test import Client

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from callvault.monitoring.heartbeats import Heartbeat, do_ingest_heartbeats
from callvault.monitoring.models import Device
from callvault.monitoring.tests.support import enrol
from callvault.monitoring.timeline import member_day
from conftest import make_member, make_project

BERLIN = ZoneInfo("Europe/Berlin")
SPRING = date(2025, 3, 30)
AUTUMN = date(2025, 10, 26)


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """callvault's clock (timezone.now) at the moment, for what is written meanwhile."""
    with patch("django.utils.timezone.now", return_value=moment.astimezone(UTC)):
        yield


def world(day: date) -> tuple[Membership, Membership, Device]:
    """A Berlin project with an operator, their enrolled device and a supervisor, made the
    day before: on PostgreSQL the audit trail's reads rely on its ids following its times
    (audit/queries.py, in_time), so nothing may be stamped later than what the test writes
    on the day."""
    with clock_at(datetime.combine(day - timedelta(days=1), time(12), tzinfo=BERLIN)):
        project = make_project("alpha")
        Project.objects.filter(pk=project.pk).update(time_zone="Europe/Berlin")
        project.refresh_from_db()
        operator = make_member(project, "bob", Role.OPERATOR)
        supervisor = make_member(project, "sam", Role.SUPERVISOR)
        made, _ = enrol(operator)
    device = Device.objects.select_related("project__monitoring_policy").get(pk=made.pk)
    return operator, supervisor, device


def acted_at(member: Membership, moment: datetime) -> None:
    """An event of the member's, stamped at the moment."""
    with clock_at(moment), acting_as(Actor.member(member.user)):
        record_event("order.view", project_id=member.project_id, object_type="order")


def test_a_span_and_an_action_of_the_same_moment_share_the_axis_in_spring(db):
    """The review's finding: on the 23-hour day the action was drawn an hour away from the
    span of the same moment, on a 24-hour axis."""
    operator, _supervisor, device = world(SPRING)
    moment = datetime(2025, 3, 30, 14, 2, 30, tzinfo=BERLIN)
    do_ingest_heartbeats(device, [Heartbeat(1, moment, "active", "crm", "Orders")])
    acted_at(operator, moment)
    day = member_day(operator, SPRING, BERLIN)
    (bar,) = day.states
    (minute,) = day.actions
    assert day.minutes == 23 * 60
    # 14:02:30 local is 12:02:30 UTC; midnight was 23:00 UTC: 13 real hours later.
    assert bar.x == 13 * 60 + 2.5
    assert minute.x == 13 * 60 + 2  # the minute's start
    hours = day.hours
    assert len(hours) == 23 and [h for h, _x in hours][:4] == [0, 1, 3, 4]
    assert hours[2] == (3, 120.0)


def test_the_day_the_clocks_go_back_has_25_hours_and_two_of_0200(db):
    operator, _supervisor, device = world(AUTUMN)
    first = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 summer time
    second = first + timedelta(hours=1)  # 02:30 again, winter time
    assert first.astimezone(BERLIN).hour == second.astimezone(BERLIN).hour == 2
    beats = [Heartbeat(1, first, "active", "crm", "A"), Heartbeat(2, second, "idle", None, None)]
    do_ingest_heartbeats(device, beats)
    acted_at(operator, first)
    acted_at(operator, second)
    day = member_day(operator, AUTUMN, BERLIN)
    assert day.minutes == 25 * 60
    assert [h for h, _x in day.hours][:5] == [0, 1, 2, 2, 3]
    assert day.hours[-1] == (23, 24 * 60.0)
    # Midnight was 22:00 UTC: the two 02:30s are 150 and 210 real minutes into the day,
    # and the audit trail's two minutes are not folded into one.
    assert [m.x for m in day.actions] == [150.0, 210.0]
    assert [b.x for b in day.states] == [150.0, 210.0]


def test_the_page_draws_a_25_hour_axis(db):
    operator, supervisor, _device = world(AUTUMN)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(supervisor.user)
    url = f"/p/alpha/monitoring/timeline/{operator.user_id}/?day={AUTUMN:%Y-%m-%d}"
    html = client.get(url).content.decode()
    assert 'viewBox="0 0 1500.0 100"' in html
    assert 'class="tl-hours h25"' in html
    assert html.count('<line class="tl-hour"') == 25
