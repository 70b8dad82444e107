"""My sessions (every member) and the project's sessions (owners): listing and revoking."""

from __future__ import annotations

from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from callvault.accounts.models import MemberSession, Membership
from callvault.audit.models import AuditEvent
from conftest import login

MINE = reverse("account:my_sessions")
ORDERS = "/p/alpha/orders/mine/"


def browser(member: Membership, agent: str = "Firefox/140 (X11; Linux x86_64)") -> Client:
    client = login(member)
    row = MemberSession.objects.get(session_key=client.session.session_key)
    MemberSession.objects.filter(pk=row.pk).update(user_agent=agent, ip="198.51.100.7")
    return client


def row_of(client: Client) -> MemberSession:
    return MemberSession.objects.get(session_key=client.session.session_key)


def project_page(slug: str = "alpha") -> str:
    return reverse("accounts:sessions", args=[slug])


def project_revoke(row: MemberSession, slug: str = "alpha") -> str:
    return reverse("accounts:session_revoke", args=[slug, row.pk])


# --- My sessions --------------------------------------------------------------------------


def test_my_sessions_sends_an_anonymous_visitor_to_login():
    response = Client().get(MINE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_my_sessions_lists_mine_with_device_address_and_the_current_one(operator, supervisor):
    here = browser(operator)
    browser(operator, agent="Mozilla/5.0 (Windows NT 10.0) Chrome/137.0 Safari/537.36")
    browser(supervisor, agent="Opera OPR/100 Android")
    page = here.get(MINE).content.decode()
    assert "Firefox on Linux" in page and "Chrome on Windows" in page
    assert "Opera on Android" not in page  # someone else's
    assert "198.51.100.7" in page
    assert page.count('<tr class="current">') == 1


def test_a_member_ends_another_session_of_their_own(operator):
    here = browser(operator)
    there = browser(operator)
    other = row_of(there)
    response = here.post(reverse("account:my_session_revoke", args=[other.pk]))
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.end_reason == "revoked"
    assert not Session.objects.filter(session_key=other.session_key).exists()
    assert there.get(ORDERS).status_code == 302  # logged out at once
    assert here.get(ORDERS).status_code == 200
    event = AuditEvent.objects.get(action="auth.session_revoked")
    assert (event.actor_name, event.extra["by"], event.project_id) == (
        "bob",
        "self",
        operator.project_id,
    )


def test_a_member_cannot_end_someone_elses_session_or_revoke_by_get(operator, supervisor):
    here = browser(operator)
    theirs = row_of(browser(supervisor))
    url = reverse("account:my_session_revoke", args=[theirs.pk])
    assert here.post(url).status_code == 404
    assert here.get(url).status_code == 405
    assert (
        here.post(reverse("account:my_session_revoke", args=[row_of(here).pk])).status_code == 404
    )
    theirs.refresh_from_db()
    assert theirs.ended_at is None


def test_a_member_ends_all_other_sessions_at_once(operator):
    here = browser(operator)
    others = [row_of(browser(operator)) for _ in range(2)]
    here.post(reverse("account:my_sessions_revoke_others"))
    assert all(MemberSession.objects.get(pk=o.pk).ended_at for o in others)
    assert row_of(here).ended_at is None
    assert AuditEvent.objects.filter(action="auth.session_revoked").count() == 2


# --- The project's sessions (owners) ------------------------------------------------------


def test_the_project_sessions_page_sends_an_anonymous_visitor_to_login():
    assert Client().get(project_page()).status_code == 302


def test_the_project_sessions_page_is_not_found_for_outsiders_and_non_owners(
    outsider, supervisor, operator
):
    for member in (outsider, supervisor, operator):
        assert login(member).get(project_page()).status_code == 404, member.role


def test_an_owner_sees_the_members_sessions_but_not_outsiders(owner, operator, outsider):
    browser(operator)
    browser(outsider, agent="Opera OPR/100 Android")
    page = login(owner).get(project_page()).content.decode()
    assert "bob" in page and "Firefox on Linux" in page
    assert "charlie" not in page and "Opera" not in page


def test_an_owner_filters_by_member(owner, operator, supervisor):
    browser(operator)
    browser(supervisor)
    client = login(owner)
    page = client.get(project_page() + f"?member={operator.pk}").content.decode()
    assert "<td>bob</td>" in page and "<td>sam</td>" not in page


def test_a_member_filter_of_another_project_is_not_found(owner, outsider):
    assert login(owner).get(project_page() + f"?member={outsider.pk}").status_code == 404


def test_an_owner_ends_a_members_session_and_it_is_recorded(owner, operator):
    theirs = browser(operator)
    row = row_of(theirs)
    client = login(owner)
    response = client.post(project_revoke(row), {"member": str(operator.pk)})
    assert response.status_code == 302
    assert response["Location"] == project_page() + f"?member={operator.pk}"
    row.refresh_from_db()
    assert row.end_reason == "revoked"
    assert theirs.get(ORDERS).status_code == 302
    event = AuditEvent.objects.get(action="auth.session_revoked")
    assert (event.actor_name, event.extra["by"], event.extra["user"], event.project_id) == (
        "alice",
        "owner",
        "bob",
        owner.project_id,
    )


def test_an_owner_cannot_end_a_session_outside_the_project(owner, outsider):
    row = row_of(browser(outsider))
    assert login(owner).post(project_revoke(row)).status_code == 404
    row.refresh_from_db()
    assert row.ended_at is None


def test_a_non_owner_cannot_end_a_members_session(supervisor, operator, outsider):
    row = row_of(browser(operator))
    assert login(supervisor).post(project_revoke(row)).status_code == 404
    assert login(outsider).post(project_revoke(row)).status_code == 404
    assert Client().post(project_revoke(row)).status_code == 302
    row.refresh_from_db()
    assert row.ended_at is None
