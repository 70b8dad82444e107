"""The owners' alerts page: who may see it, the filters, the timeline links, mark read; and
the owner's dashboard block."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from callvault.accounts.models import SecurityNotice
from callvault.accounts.notices import notify_owners
from callvault.guard import alerts
from conftest import login

URL = "/p/alpha/guard/alerts/"


def burst(member, count=40):
    return alerts.raise_alert(
        member, "cards_burst", {"count": count, "minutes": 10, "threshold": 40}
    )


def test_anonymous_is_sent_to_login(project):
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, operator):
    notice = burst(operator)
    client = login(outsider)
    assert client.get(URL).status_code == 404
    assert client.post(f"{URL}read/").status_code == 404
    assert client.post(f"{URL}{notice.pk}/read/").status_code == 404
    assert SecurityNotice.objects.filter(read_at__isnull=True).count() == 1


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_who_are_not_owners_get_404(who, request, operator):
    burst(operator)
    client = login(request.getfixturevalue(who))
    assert client.get(URL).status_code == 404
    assert client.post(f"{URL}read/").status_code == 404
    assert SecurityNotice.objects.filter(read_at__isnull=True).count() == 1


def test_the_owner_sees_alerts_with_their_figures_newest_first(owner, operator, trainee):
    burst(operator, 41)
    burst(trainee, 44)
    page = login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    second = page.index("tina opened 44 order cards within 10 minutes (alert at 40).")
    first = page.index("bob opened 41 order cards within 10 minutes (alert at 40).")
    assert second < first
    assert "Many order cards in a short time" in page


def test_the_security_notices_of_issue_5_are_alerts_too(owner, operator):
    notify_owners(owner.project_id, "support_used", {"person": "Oleg", "ip": "198.51.100.9"})
    page = login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Support access of Oleg was used from 198.51.100.9." in page


def test_each_alert_links_to_the_members_timeline_that_day(owner, operator):
    notice = burst(operator)
    page = login(owner).get(URL).content.decode()
    day = notice.created_at.astimezone(ZoneInfo("Europe/Moscow")).date()
    assert f"/p/alpha/audit/timeline/{operator.user_id}/?day={day.isoformat()}" in page


def test_an_alert_about_nobody_has_no_timeline_link(owner):
    notify_owners(owner.project_id, "support_used", {"person": "Oleg", "ip": "198.51.100.9"})
    assert "/audit/timeline/" not in login(owner).get(URL).content.decode()


def test_filters_by_kind_member_and_unread(owner, operator, trainee):
    burst(operator, 41)
    read = burst(trainee, 42)
    alerts.raise_alert(trainee, "reveals_burst", {"count": 12, "minutes": 10, "threshold": 10})
    alerts.mark_read(owner.project, read.pk)
    client = login(owner)

    def shown(query: str) -> list[str]:
        page = client.get(f"{URL}?{query}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        return [
            who
            for who, n in (("bob", "41"), ("tina", "42"), ("tina", "12"))
            if f"{who} opened {n} order cards" in page or f"{who} revealed {n} phone" in page
        ]

    assert shown("") == ["bob", "tina", "tina"]
    assert shown("kind=cards_burst") == ["bob", "tina"]
    assert shown(f"member={trainee.user_id}") == ["tina", "tina"]
    assert shown("unread=on") == ["bob", "tina"]
    assert shown(f"kind=cards_burst&member={trainee.user_id}&unread=on") == []


def test_mark_one_read_and_all_read(owner, operator):
    first, second = burst(operator), burst(operator, 50)
    client = login(owner)
    response = client.post(f"{URL}{first.pk}/read/", {"query": "kind=cards_burst&evil=1"})
    assert response.status_code == 302
    assert response["Location"] == f"{URL}?kind=cards_burst"
    assert set(SecurityNotice.objects.filter(read_at__isnull=True)) == {second}
    client.post(f"{URL}read/")
    assert not SecurityNotice.objects.filter(read_at__isnull=True).exists()
    assert "Mark all read" not in client.get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_another_projects_alert_cannot_be_marked_read(owner, outsider):
    theirs = notify_owners(outsider.project_id, "support_used", {"person": "E", "ip": "192.0.2.1"})
    assert login(owner).post(f"{URL}{theirs.pk}/read/").status_code == 404
    assert SecurityNotice.objects.get(pk=theirs.pk).read_at is None


def test_only_the_projects_own_alerts_are_listed(owner, outsider):
    notify_owners(outsider.project_id, "support_used", {"person": "Eve", "ip": "192.0.2.1"})
    assert "Eve" not in login(owner).get(URL).content.decode()


def test_the_list_costs_the_same_queries_however_many_alerts(
    owner, operator, django_assert_max_num_queries
):
    for n in range(30):
        burst(operator, 40 + n)
    client = login(owner)
    client.get(URL)
    with django_assert_max_num_queries(20):
        client.get(URL)


DASHBOARD = "/p/alpha/orders/dashboard/"


def test_the_owners_dashboard_shows_the_latest_unread_alerts(owner, operator):
    for n in range(7):
        burst(operator, 40 + n)
    alerts.mark_read(owner.project, SecurityNotice.objects.get(params__count=46).pk)
    page = login(owner).get(DASHBOARD, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Unread alerts" in page
    shown = [n for n in range(40, 47) if f"bob opened {n} order cards" in page]
    assert shown == [41, 42, 43, 44, 45]  # the newest five unread
    assert URL in page


def test_the_dashboard_says_when_nothing_is_unread(owner):
    page = login(owner).get(DASHBOARD, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No unread alerts." in page


def test_a_supervisors_dashboard_has_no_alerts(supervisor, operator):
    burst(operator)
    page = login(supervisor).get(DASHBOARD, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Unread alerts" not in page
    assert "bob opened" not in page
