"""The owner's security notices are alerts now: the old page leads to the alerts page, which
lists them newest first, in the reader's language, with a link to the member's timeline
(found through the notice's audit event); mark all read; the unread count in the settings
menu."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import translation
from django.utils.html import escape

from callvault.accounts.models import SecurityNotice
from callvault.accounts.notices import describe, notify_owners
from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from conftest import login

OLD_URL = "/p/alpha/settings/notices/"
URL = "/p/alpha/guard/alerts/"


def refused(member, ip="203.0.113.7"):
    """A refused-address notice about the member, with its audit event."""
    with acting_as(Actor.member(member.user)):
        event = record_event(
            "auth.login_failed",
            project_id=member.project_id,
            object_type="user",
            object_id=member.user.pk,
        )
    return notify_owners(
        member.project_id,
        "refused_address",
        {"user": member.user.username, "ip": ip},
        event_id=event.pk,
    )


def test_anonymous_is_sent_to_login(project):
    response = Client().get(OLD_URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_outsider_gets_404(outsider, owner):
    refused(owner)
    assert login(outsider).get(OLD_URL).status_code == 404
    assert login(outsider).get(URL).status_code == 404
    assert SecurityNotice.objects.filter(read_at__isnull=True).count() == 1


@pytest.mark.parametrize("who", ["supervisor", "operator", "trainee"])
def test_members_who_are_not_owners_get_404(who, request, owner):
    refused(owner)
    client = login(request.getfixturevalue(who))
    assert client.get(OLD_URL).status_code == 404
    assert client.get(URL).status_code == 404
    assert SecurityNotice.objects.filter(read_at__isnull=True).count() == 1


def test_the_old_page_leads_the_owner_to_the_alerts(owner):
    response = login(owner).get(OLD_URL)
    assert response.status_code == 302
    assert response["Location"] == URL


def test_the_owner_reads_the_notices_newest_first_in_their_language(owner, operator):
    refused(operator, "203.0.113.7")
    notice = notify_owners(
        owner.project_id, "support_used", {"person": "Oleg", "ip": "198.51.100.9"}
    )
    english = login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    first = english.index("Support access of Oleg was used from 198.51.100.9.")
    second = english.index("bob was refused: access from 203.0.113.7 is not allowed.")
    assert first < second
    russian = login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    with translation.override("ru"):
        assert escape(describe(notice)) in russian


def test_only_the_projects_own_notices_are_listed(owner, outsider):
    notify_owners(outsider.project_id, "support_used", {"person": "Eve", "ip": "192.0.2.1"})
    assert "Eve" not in login(owner).get(URL).content.decode()


def test_a_notice_links_to_the_members_timeline_on_that_day(owner, operator):
    notice = refused(operator)
    page = login(owner).get(URL).content.decode()
    day = notice.created_at.astimezone(ZoneInfo("Europe/Moscow")).date()
    assert f"/p/alpha/audit/timeline/{operator.user.pk}/?day={day.isoformat()}" in page


def test_a_notice_without_a_member_has_no_timeline_link(owner):
    notify_owners(owner.project_id, "support_used", {"person": "Oleg", "ip": "198.51.100.9"})
    assert "/audit/timeline/" not in login(owner).get(URL).content.decode()


def test_mark_all_read(owner, operator):
    refused(operator)
    refused(operator, "203.0.113.8")
    client = login(owner)
    response = client.post(f"{URL}read/")
    assert response.status_code == 302
    assert not SecurityNotice.objects.filter(read_at__isnull=True).exists()
    assert "Mark all read" not in client.get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_the_settings_menu_counts_unread_notices_for_owners(owner, operator):
    client = login(owner)
    members_page = "/p/alpha/settings/members/"
    assert 'class="badge"' not in client.get(members_page).content.decode()
    refused(operator)
    refused(operator, "203.0.113.8")
    notify_owners(operator.project_id, "support_used", {"person": "Oleg", "ip": "192.0.2.1"})
    assert (
        '<span class="badge" title="unread">3</span>'
        in client.get(members_page, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    )
    assert f'href="{URL}"' in client.get(members_page).content.decode()
    client.post(f"{URL}read/")
    assert 'class="badge"' not in client.get(members_page).content.decode()
