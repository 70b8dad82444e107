"""Logins, logouts and failed logins are recorded with the address the proxy setting decides."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client

from callvault.accounts.actions import do_add_member, do_deactivate_member
from callvault.accounts.models import Role
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login

URL = "/accounts/login/"
CLIENT_IP = "198.51.100.4"


def post_login(username: str, password: str, **extra: Any):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    return client, client.post(
        URL,
        {"username": username, "password": password},
        REMOTE_ADDR=CLIENT_IP,
        HTTP_USER_AGENT="Firefox/140",
        **extra,
    )


def failed(username: str) -> AuditEvent:
    return AuditEvent.objects.get(action="auth.login_failed", extra__username=username)


def test_a_login_is_recorded_with_the_member_the_ip_the_agent_and_their_project(operator):
    _, response = post_login("bob", PASSWORD)
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.login")
    assert (event.actor_kind, event.actor_id, event.actor_name) == (
        "member",
        str(operator.user_id),
        "bob",
    )
    assert (event.ip, event.user_agent) == (CLIENT_IP, "Firefox/140")
    assert event.request_id == response["X-Request-ID"]
    assert (event.object_type, event.object_id) == ("user", str(operator.user_id))
    assert event.project_id == operator.project_id


def test_a_spoofed_forwarded_for_is_not_the_recorded_address_of_a_login(operator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    post_login("bob", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert AuditEvent.objects.get(action="auth.login").ip == CLIENT_IP


def test_a_spoofed_forwarded_for_is_not_the_recorded_address_of_a_failed_login(operator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    post_login("bob", "not the password", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert failed("bob").ip == CLIENT_IP


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_recorded_address(operator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    Client().post(
        URL,
        {"username": "bob", "password": "not the password"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.66",
    )
    assert failed("bob").ip == "203.0.113.66"


def test_a_wrong_password_is_recorded_with_the_username_and_never_the_password(operator):
    _, response = post_login("bob", "hunter2 is my password")
    assert response.status_code == 200
    event = failed("bob")
    assert event.extra == {"username": "bob", "reason": "wrong password"}
    assert (event.actor_kind, event.ip) == ("anonymous", CLIENT_IP)
    assert (event.object_id, event.project_id) == (str(operator.user_id), operator.project_id)
    assert "hunter2" not in json.dumps([event.changes, event.extra, event.object_repr])


def page_without_token(response) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def test_an_unknown_username_is_recorded_and_answered_exactly_like_a_wrong_password(operator):
    _, wrong = post_login("bob", "not the password")
    _, unknown = post_login("nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 200
    assert page_without_token(wrong) == page_without_token(unknown)
    assert "Wrong username or password." in page_without_token(unknown)
    event = failed("nobody-here")
    assert event.extra == {"username": "nobody-here", "reason": "unknown user"}
    # Nobody's project: a stranger's typo is not shown to any project's owner.
    assert (event.project_id, event.object_id, event.ip) == (None, "", CLIENT_IP)


def test_a_deactivated_user_is_refused_alike_and_recorded_as_inactive(operator):
    operator.user.is_active = False
    operator.user.save(update_fields=["is_active"])
    _, response = post_login("bob", PASSWORD)
    assert response.status_code == 200
    event = failed("bob")
    assert (event.extra["reason"], event.project_id) == ("inactive user", operator.project_id)
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_a_username_holding_a_phone_number_is_recorded_with_the_digits_blanked(db, phone):
    post_login(phone[0], "not the password")
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.extra["username"] == "[redacted]"
    digits = phone[1][2:]
    assert digits not in re.sub(r"\D", "", json.dumps(event.extra))


def test_an_overlong_username_is_cut(db):
    post_login("x" * 500, "not the password")
    assert AuditEvent.objects.get(action="auth.login_failed").extra["username"] == "x" * 150


def test_a_member_of_several_projects_logs_in_on_no_project_with_the_projects_named(
    owner, other_project
):
    do_add_member(other_project, owner.user, Role.SUPERVISOR)
    post_login("alice", PASSWORD)
    event = AuditEvent.objects.get(action="auth.login")
    assert event.project_id is None
    assert event.extra["projects"] == sorted([owner.project_id, other_project.pk])


def test_a_deactivated_membership_does_not_count_as_the_users_project(owner, other_project):
    other = do_add_member(other_project, owner.user, Role.SUPERVISOR)
    do_deactivate_member(other)
    post_login("alice", PASSWORD)
    assert AuditEvent.objects.get(action="auth.login").project_id == owner.project_id


def test_a_logout_is_recorded_with_the_member_as_actor(operator):
    client, _ = post_login("bob", PASSWORD)
    response = client.post("/accounts/logout/", REMOTE_ADDR=CLIENT_IP)
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.logout")
    assert (event.actor_kind, event.actor_name, event.ip) == ("member", "bob", CLIENT_IP)
    assert event.project_id == operator.project_id


def test_a_logout_without_a_login_records_nothing(db):
    Client().post("/accounts/logout/")
    assert not AuditEvent.objects.filter(action="auth.logout").exists()


def test_the_test_clients_force_login_outside_a_request_records_no_login(operator):
    login(operator)
    assert not AuditEvent.objects.filter(action__startswith="auth.").exists()


def test_a_password_change_through_the_page_is_recorded_with_the_request(operator):
    client, _ = post_login("bob", PASSWORD)
    new = "a brand new passphrase 77"
    client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
        REMOTE_ADDR=CLIENT_IP,
    )
    event = AuditEvent.objects.get(action="user.password_change")
    assert (event.actor_name, event.ip, event.changes["password"]) == ("bob", CLIENT_IP, "changed")
    assert new not in json.dumps([event.changes, event.extra])
