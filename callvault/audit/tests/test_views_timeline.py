"""A member's day /p/<slug>/audit/timeline/<user id>/: in time order, new addresses marked."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.audit.tests.viewer_support import TIMELINE, ahead, english, event
from callvault.orders.tests.support import HttpsClient, login

_DATE, MIDNIGHT = ahead(ZoneInfo("Europe/Moscow"))  # the project's clock
DAY = _DATE.isoformat()


def url(member: Membership, slug: str = "alpha") -> str:
    return TIMELINE.format(slug=slug, user_id=member.user_id)


def test_it_sends_anonymous_visitors_to_login(operator: Membership) -> None:
    response = HttpsClient().get(url(operator))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["operator", "trainee", "outsider"])
def test_it_is_not_found_for_members_who_may_not_read_the_record(
    role: str, request: pytest.FixtureRequest, supervisor: Membership
) -> None:
    member: Membership = request.getfixturevalue(role)
    assert login(member).get(url(supervisor)).status_code == 404
    assert login(member).get(url(member)).status_code == 404


def test_it_is_not_found_for_someone_outside_the_project(
    supervisor: Membership, outsider: Membership
) -> None:
    assert login(supervisor).get(url(outsider)).status_code == 404
    assert login(supervisor).get(TIMELINE.format(slug="alpha", user_id=99999)).status_code == 404


def test_it_lists_the_members_day_in_time_order(
    supervisor: Membership, operator: Membership, other_project: Project
) -> None:
    uid = str(operator.user_id)
    pid = operator.project_id
    # Written in time order, as the product writes them.
    event(pid, actor_id=uid, created_at=MIDNIGHT - timedelta(seconds=1), object_repr="mark-before")
    event(
        pid,
        actor_id=uid,
        created_at=MIDNIGHT + timedelta(hours=9),
        object_repr="mark-first",
        user_agent="Firefox/140",
    )
    event(
        pid,
        actor_id=str(supervisor.user_id),
        created_at=MIDNIGHT + timedelta(hours=9),
        object_repr="mark-sam",
    )
    event(
        other_project.pk,
        actor_id=uid,
        created_at=MIDNIGHT + timedelta(hours=9),
        object_repr="mark-beta",
    )
    event(pid, actor_id=uid, created_at=MIDNIGHT + timedelta(hours=10), object_repr="mark-second")
    event(pid, actor_id=uid, created_at=MIDNIGHT + timedelta(days=1), object_repr="mark-after")
    response = english(supervisor).get(url(operator), {"day": DAY})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.index("mark-first") < page.index("mark-second")
    for absent in ("mark-before", "mark-after", "mark-sam", "mark-beta"):
        assert absent not in page
    assert "09:00:00" in page and "Firefox/140" in page
    assert f"?day={_DATE - timedelta(days=1)}" in page
    assert f"?day={_DATE + timedelta(days=1)}" in page


def test_it_marks_an_address_new_to_the_member_and_not_an_old_one(
    supervisor: Membership, operator: Membership
) -> None:
    uid, pid = str(operator.user_id), operator.project_id
    event(pid, actor_id=uid, ip="192.0.2.99", created_at=MIDNIGHT - timedelta(days=45))
    event(pid, actor_id=uid, ip="192.0.2.10", created_at=MIDNIGHT - timedelta(days=5))
    event(pid, actor_id=uid, ip="192.0.2.10", created_at=MIDNIGHT + timedelta(hours=9))
    event(pid, actor_id=uid, ip="192.0.2.99", created_at=MIDNIGHT + timedelta(hours=10))
    response = english(supervisor).get(url(operator), {"day": DAY})
    marked = {e.ip for e, new in response.context["rows"] if new}
    assert marked == {"192.0.2.99"}
    assert response.context["new_ips"] == ["192.0.2.99"]
    assert "new IP" in response.content.decode()


def test_viewing_a_timeline_is_recorded(supervisor: Membership, operator: Membership) -> None:
    english(supervisor).get(url(operator), {"day": DAY})
    viewed = AuditEvent.objects.get(action="audit.view")
    assert (viewed.object_type, viewed.object_id) == ("user", str(operator.user_id))
    assert viewed.extra["day"] == DAY


def test_a_day_costs_the_same_queries_however_busy(
    supervisor: Membership,
    operator: Membership,
    trainee: Membership,
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    # Today, a little before now: the requests below record events of their own at now,
    # and events must be written in time order (see viewer_support.ahead).
    moment = timezone.now() - timedelta(minutes=10)
    day = {"day": moment.astimezone(ZoneInfo("Europe/Moscow")).date().isoformat()}
    pid = operator.project_id
    event(pid, actor_id=str(trainee.user_id), created_at=moment)
    for i in range(41):
        event(pid, actor_id=str(operator.user_id), ip=f"192.0.2.{i}", created_at=moment)
    client = english(supervisor)
    client.get(url(trainee), day)  # warm the session
    # Session, user, the allowed-networks and suspension checks (every request), membership
    # x2, the day's events, their addresses seen before (the days just before, then the rest
    # of the month for the addresses not seen there), the view's own event.
    with django_assert_max_num_queries(11):
        assert len(client.get(url(trainee), day).context["rows"]) == 1
    with django_assert_max_num_queries(11):
        assert len(client.get(url(operator), day).context["rows"]) == 41


def test_the_members_page_links_to_the_timeline(owner: Membership, operator: Membership) -> None:
    page = english(owner).get("/p/alpha/settings/members/").content.decode()
    assert url(operator) in page
