"""Sessions are tracked at login and held to the project's rules on every request:
revoked and ended sessions are logged out, lifetimes and address changes end them, a new
login of an operator can end the old one, and idle sessions lock until the password."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from callvault.accounts import stepup
from callvault.accounts.actions import do_add_member
from callvault.accounts.models import MemberSession, Membership, Role, RolePolicy, SecurityNotice
from callvault.accounts.policy import do_update_role_policy, do_update_security_policy, policy_for
from callvault.accounts.sessions import GUARD_KEY, device_label, do_revoke_session, limits_for
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login, make_member, make_project

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/137.0 Safari/537.36"
)


def real_login(username: str, ip: str = "198.51.100.4", agent: str = FIREFOX) -> Client:
    """Log in through the login page, from an address and a browser."""
    client = Client(REMOTE_ADDR=ip, HTTP_USER_AGENT=agent)
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response
    return client


def session_of(client: Client) -> MemberSession:
    return MemberSession.objects.get(session_key=client.session.session_key)


def stale(client: Client) -> None:
    """Make the next request check the session against the database (as it does once a
    minute), instead of waiting a minute."""
    session = client.session
    guard = session[GUARD_KEY]
    guard["at"] = 0
    session[GUARD_KEY] = guard
    session.save()


def age(client: Client, **delta: Any) -> MemberSession:
    """Move the session's last activity back in time."""
    row = session_of(client)
    MemberSession.objects.filter(pk=row.pk).update(last_seen_at=timezone.now() - timedelta(**delta))
    stale(client)
    return row


def mine(member: Membership) -> str:
    return reverse("orders:mine", args=[member.project.slug])


def is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and str(response["Location"]).startswith("/accounts/login/")


# --- Tracking -----------------------------------------------------------------------------


def test_a_login_records_a_session_with_its_address_and_browser(operator):
    client = real_login("bob")
    row = session_of(client)
    assert (row.user, row.ip, row.user_agent) == (operator.user, "198.51.100.4", FIREFOX)
    assert row.ended_at is None and row.locked_at is None
    assert abs((timezone.now() - row.last_seen_at).total_seconds()) < 60


def test_the_device_is_named_by_browser_and_system():
    assert device_label(FIREFOX) == "Firefox on Windows"
    assert device_label(CHROME_MAC) == "Chrome on macOS"
    assert device_label("") == "unknown"


def test_last_seen_is_written_at_most_once_a_minute(operator):
    client = login(operator)
    row = session_of(client)
    before = timezone.now() - timedelta(seconds=30)
    MemberSession.objects.filter(pk=row.pk).update(last_seen_at=before)
    assert client.get(mine(operator)).status_code == 200
    row.refresh_from_db()
    assert row.last_seen_at == before  # within the minute: no write
    stale(client)
    assert client.get(mine(operator)).status_code == 200
    row.refresh_from_db()
    assert row.last_seen_at > before


# --- Ending -------------------------------------------------------------------------------


def test_a_revoked_session_is_logged_out(operator):
    client = login(operator)
    do_revoke_session(session_of(client))
    assert is_login_redirect(client.get(mine(operator)))


def test_a_session_without_a_record_is_logged_out(operator):
    client = login(operator)
    session_of(client).delete()
    stale(client)
    assert is_login_redirect(client.get(mine(operator)))


def test_a_session_past_its_lifetime_ends_as_expired(operator):
    client = login(operator)
    row = session_of(client)
    MemberSession.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=13))
    stale(client)
    assert is_login_redirect(client.get(mine(operator)))
    row.refresh_from_db()
    assert row.ended_at is not None and row.end_reason == "expired"
    event = AuditEvent.objects.get(action="auth.session_ended")
    assert event.extra["reason"] == "expired"
    assert (event.actor_name, event.project_id) == ("bob", operator.project_id)


def test_a_session_within_its_lifetime_goes_on(operator):
    client = login(operator)
    row = session_of(client)
    MemberSession.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=11))
    stale(client)
    assert client.get(mine(operator)).status_code == 200


def test_the_lifetime_is_the_shortest_of_the_users_projects(operator):
    other = make_project("gamma")
    do_add_member(other, operator.user, Role.SUPERVISOR)
    do_update_security_policy(policy_for(other), session_max_hours=2)
    assert limits_for(operator.user).max_hours == 2
    client = login(operator)
    row = session_of(client)
    MemberSession.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=3))
    stale(client)
    assert is_login_redirect(client.get(mine(operator)))
    row.refresh_from_db()
    assert row.end_reason == "expired"


def test_a_new_address_ends_the_session_when_the_project_asks(operator, project):
    do_update_security_policy(policy_for(project), end_session_on_ip_change=True)
    client = real_login("bob", ip="198.51.100.4")
    row = session_of(client)
    assert client.get(mine(operator)).status_code == 200
    response = client.get(mine(operator), REMOTE_ADDR="203.0.113.9")
    assert is_login_redirect(response)
    row.refresh_from_db()
    assert row.end_reason == "ip_changed"
    assert AuditEvent.objects.get(action="auth.session_ended").extra["reason"] == "ip_changed"


def test_a_new_address_keeps_the_session_by_default(operator):
    client = real_login("bob", ip="198.51.100.4")
    assert client.get(mine(operator), REMOTE_ADDR="203.0.113.9").status_code == 200
    assert session_of(client).ended_at is None


def test_one_session_per_operator_ends_the_older_one(operator, project):
    do_update_security_policy(policy_for(project), one_session_per_operator=True)
    first = real_login("bob")
    first_row = session_of(first)
    second = real_login("bob", ip="203.0.113.9")
    first_row.refresh_from_db()
    assert first_row.end_reason == "replaced"
    assert is_login_redirect(first.get(mine(operator)))
    assert second.get(mine(operator)).status_code == 200
    event = AuditEvent.objects.get(action="auth.session_ended")
    assert event.extra == {
        "session": first_row.pk,
        "session_ip": "198.51.100.4",
        "reason": "replaced",
    }


def test_one_session_per_operator_leaves_an_owner_several(owner, project):
    do_update_security_policy(policy_for(project), one_session_per_operator=True)
    first = real_login("alice")
    real_login("alice", ip="203.0.113.9")
    assert session_of(first).ended_at is None


def test_without_the_rule_an_operator_keeps_several_sessions(operator):
    first = real_login("bob")
    real_login("bob", ip="203.0.113.9")
    assert session_of(first).ended_at is None


# --- New addresses and devices ------------------------------------------------------------


def test_the_first_login_notifies_nobody(operator):
    real_login("bob")
    assert not SecurityNotice.objects.exists()


def test_a_login_from_a_new_address_notifies_the_owners(operator, project):
    real_login("bob", ip="198.51.100.4")
    real_login("bob", ip="198.51.100.4")
    assert not SecurityNotice.objects.exists()
    real_login("bob", ip="203.0.113.9")
    notice = SecurityNotice.objects.get()
    assert (notice.project, notice.kind) == (project, "new_address")
    assert notice.params == {"user": "bob", "ip": "203.0.113.9"}


def test_a_login_from_a_new_device_notifies_the_owners(operator, project):
    real_login("bob", agent=FIREFOX)
    real_login("bob", agent=FIREFOX.replace("140.0", "141.0"))  # an update is not a new device
    assert not SecurityNotice.objects.exists()
    real_login("bob", agent=CHROME_MAC)
    notice = SecurityNotice.objects.get()
    assert (notice.kind, notice.params) == (
        "new_device",
        {"user": "bob", "device": "Chrome on macOS"},
    )


# --- The idle lock ------------------------------------------------------------------------


def test_an_idle_operator_is_locked_and_sent_to_the_unlock_page(operator):
    client = login(operator)
    row = age(client, minutes=12)
    response = client.get(mine(operator))
    assert response.status_code == 302
    assert response["Location"] == reverse("account:unlock") + "?next=" + mine(operator).replace(
        "/", "%2F"
    )
    row.refresh_from_db()
    assert row.locked_at is not None
    event = AuditEvent.objects.get(action="auth.session_locked")
    assert (event.actor_name, event.extra["idle_minutes"]) == ("bob", 10)


def test_a_locked_session_reaches_no_page_until_unlocked(operator):
    client = login(operator)
    age(client, minutes=12)
    client.get(mine(operator))
    for path in (mine(operator), reverse("account:my_sessions"), reverse("home")):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/unlock/" in response["Location"], path
    post = client.post(reverse("orders:next", args=[operator.project.slug]))
    assert post.status_code == 302 and post["Location"] == reverse("account:unlock")


def test_a_locked_session_answers_htmx_with_a_redirect_header(operator):
    client = login(operator)
    age(client, minutes=12)
    response = client.get(mine(operator), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(reverse("account:unlock"))


def test_a_locked_session_still_reaches_the_lock_screen_the_ping_and_logout(operator):
    client = login(operator)
    age(client, minutes=12)
    page = client.get(reverse("account:unlock"))
    assert page.status_code == 423
    assert b'name="password"' in page.content
    ping = client.post(reverse("account:idle_ping"))
    assert ping.status_code == 200 and ping.json() == {"locked": True, "logged_in": True}
    assert client.post(reverse("logout")).status_code == 302
    assert is_login_redirect(client.get(mine(operator)))


def test_an_operator_idle_for_less_than_the_limit_is_not_locked(operator):
    client = login(operator)
    row = age(client, minutes=9)
    assert client.get(mine(operator)).status_code == 200
    row.refresh_from_db()
    assert row.locked_at is None
    assert (timezone.now() - row.last_seen_at).total_seconds() < 60


def test_the_idle_time_depends_on_the_role(supervisor):
    client = login(supervisor)
    age(client, minutes=12)  # supervisors: 30 minutes by default
    assert client.get(reverse("orders:list", args=["alpha"])).status_code == 200
    age(client, minutes=32)
    assert client.get(reverse("orders:list", args=["alpha"])).status_code == 302


def test_the_idle_time_is_the_roles_policy(operator, project):
    row = RolePolicy.objects.get(project=project, role=Role.OPERATOR)
    do_update_role_policy(row, idle_minutes=3)
    client = login(operator)
    age(client, minutes=5)
    assert client.get(mine(operator)).status_code == 302


def test_the_idle_time_is_the_shortest_across_projects(supervisor):
    other = make_project("gamma")
    membership = do_add_member(other, supervisor.user, Role.OPERATOR)
    assert limits_for(supervisor.user).idle_minutes == 10
    assert membership.role == Role.OPERATOR


def test_the_ping_says_whether_the_session_is_locked(operator):
    client = login(operator)
    assert client.post(reverse("account:idle_ping")).json() == {"locked": False, "logged_in": True}
    assert client.get(reverse("account:idle_ping")).status_code == 405
    assert Client().post(reverse("account:idle_ping")).status_code == 401


def test_the_ping_is_activity_that_keeps_the_session_open(operator):
    client = login(operator)
    row = age(client, minutes=9)
    client.post(reverse("account:idle_ping"))
    row.refresh_from_db()
    assert (timezone.now() - row.last_seen_at).total_seconds() < 60


def test_the_page_tells_the_script_the_idle_time(operator, supervisor):
    page = login(operator).get(mine(operator)).content.decode()
    assert 'data-idle-seconds="600"' in page
    assert 'id="idle-lock-template"' in page and "idle-lock.js" in page
    assert 'data-idle-seconds="1800"' in login(supervisor).get("/p/alpha/orders/").content.decode()


def test_the_lock_screen_sends_an_anonymous_visitor_to_login():
    assert is_login_redirect(Client().get(reverse("account:unlock")))


def test_a_wrong_password_keeps_the_lock_and_counts_as_a_failed_login(operator):
    client = login(operator)
    row = age(client, minutes=12)
    client.get(mine(operator))
    response = client.post(reverse("account:unlock"), {"password": "wrong", "next": mine(operator)})
    assert response.status_code == 423
    assert b"errorlist" in response.content
    row.refresh_from_db()
    assert row.locked_at is not None
    assert AuditEvent.objects.filter(action="auth.login_failed", object_id=str(operator.user_id))
    assert client.get(mine(operator)).status_code == 302
    assert not AuditEvent.objects.filter(action="auth.session_unlocked").exists()


def test_the_password_unlocks_and_counts_as_a_step_up(operator):
    client = login(operator)
    row = age(client, minutes=12)
    client.get(mine(operator))
    response = client.post(
        reverse("account:unlock"), {"password": PASSWORD, "next": mine(operator)}
    )
    assert response.status_code == 302 and response["Location"] == mine(operator)
    row.refresh_from_db()
    assert row.locked_at is None
    assert client.get(mine(operator)).status_code == 200
    assert stepup.SESSION_KEY in client.session
    event = AuditEvent.objects.get(action="auth.session_unlocked")
    assert (event.actor_name, event.project_id) == ("bob", operator.project_id)


def test_unlock_never_sends_to_another_site(operator):
    client = login(operator)
    response = client.post(
        reverse("account:unlock"), {"password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("home")


def test_a_user_of_several_projects_gets_events_filed_under_none(operator):
    other = make_project("gamma")
    do_add_member(other, operator.user, Role.OPERATOR)
    make_member(other, "olga", Role.OWNER)
    client = login(operator)
    age(client, minutes=12)
    client.get(mine(operator))
    event = AuditEvent.objects.get(action="auth.session_locked")
    assert event.project_id is None
    assert sorted(event.extra["projects"]) == sorted([operator.project_id, other.pk])


# --- Keys that change, logouts ------------------------------------------------------------


def test_logging_out_ends_the_session(operator):
    client = real_login("bob")
    row = session_of(client)
    client.post(reverse("logout"))
    row.refresh_from_db()
    assert (row.end_reason, row.ended_at is not None) == ("logout", True)


def test_a_password_change_keeps_the_session_under_its_new_key(operator):
    client = real_login("bob")
    row = session_of(client)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a brand new passphrase 2026!",
            "new_password2": "a brand new passphrase 2026!",
        },
    )
    assert response.status_code == 302
    assert client.session.session_key != row.session_key  # Django cycled it
    row.refresh_from_db()
    assert row.session_key == client.session.session_key and row.ended_at is None
    stale(client)
    assert client.get(mine(operator)).status_code == 200


def test_logging_in_again_in_the_same_browser_renews_its_session(operator):
    client = real_login("bob")
    row = session_of(client)
    MemberSession.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=5))
    client.post(
        "/accounts/login/",
        {"username": "bob", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.9",
    )
    assert MemberSession.objects.filter(user=operator.user, ended_at__isnull=True).count() == 1
    renewed = session_of(client)
    assert renewed.ip == "203.0.113.9"
    assert (timezone.now() - renewed.created_at).total_seconds() < 60


def test_logging_in_as_someone_else_in_the_same_browser_ends_the_first_session(operator, owner):
    client = real_login("bob")
    row = session_of(client)
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    row.refresh_from_db()
    assert row.ended_at is not None
    assert session_of(client).user == owner.user
