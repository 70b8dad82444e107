"""Every request of a logged-in person, and the login itself, is held to the allowed networks:
a refusal ends the session, answers a plain 403 page, is recorded and noticed to the owner."""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.models import Session
from django.test import Client

from callvault.accounts.actions import do_add_member, do_create_user, do_deactivate_member
from callvault.accounts.allowlist import do_add_network
from callvault.accounts.models import Role, RolePolicy, SecurityNotice, TwoFactorRule
from callvault.accounts.policy import do_update_role_policy
from callvault.audit.models import AuditEvent
from conftest import PASSWORD
from conftest import login as login_as

MINE = "/p/alpha/orders/mine/"
OFFICE = "192.0.2.0/24"
INSIDE = "192.0.2.10"
OUTSIDE = "203.0.113.9"


def login(member: Any) -> Client:
    """Logged in, reading English (the assertions read the refusal page's text)."""
    client = login_as(member)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_a_member_inside_the_list_works_as_usual(operator):
    do_add_network(operator.project, OFFICE, "Office")
    assert login(operator).get(MINE, REMOTE_ADDR=INSIDE).status_code == 200


def test_a_member_outside_the_list_is_refused_with_a_plain_page(operator):
    do_add_network(operator.project, OFFICE, "Office Tverskaya")
    response = login(operator).get(MINE, REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    text = response.content.decode()
    assert "Access from this address is not allowed" in text
    # Nothing about the ranges themselves.
    assert OFFICE not in text and "Tverskaya" not in text and "192.0.2" not in text


def test_a_refusal_ends_the_session(operator):
    do_add_network(operator.project, OFFICE, "Office")
    client = login(operator)
    client.get(MINE, REMOTE_ADDR=OUTSIDE)
    assert not Session.objects.exists()
    # Even back inside the office the old session is gone: log in again.
    response = client.get(MINE, REMOTE_ADDR=INSIDE)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_refusal_is_recorded_with_the_address_path_and_project(operator):
    do_add_network(operator.project, OFFICE, "Office")
    response = login(operator).get(MINE, REMOTE_ADDR=OUTSIDE)
    event = AuditEvent.objects.get(action="auth.ip_refused")
    assert (event.actor_name, event.ip, event.project_id) == ("bob", OUTSIDE, operator.project_id)
    assert (event.object_type, event.object_id) == ("user", str(operator.user_id))
    assert event.extra == {"ip": OUTSIDE, "path": MINE, "project": "alpha"}
    assert event.request_id == response["X-Request-ID"]
    assert AuditEvent.objects.filter(action="auth.logout").exists()


def test_the_owner_gets_a_notice_of_the_refusal(operator):
    do_add_network(operator.project, OFFICE, "Office")
    login(operator).get(MINE, REMOTE_ADDR=OUTSIDE)
    notice = SecurityNotice.objects.get()
    assert (notice.project_id, notice.kind) == (operator.project_id, "refused_address")
    assert notice.params == {"user": "bob", "ip": OUTSIDE}
    assert notice.event_id == AuditEvent.objects.get(action="auth.ip_refused").pk


def test_repeated_refusals_make_one_notice_an_hour_per_person_and_address(operator):
    do_add_network(operator.project, OFFICE, "Office")
    for _ in range(3):
        login(operator).get(MINE, REMOTE_ADDR=OUTSIDE)
    assert AuditEvent.objects.filter(action="auth.ip_refused").count() == 3
    assert SecurityNotice.objects.count() == 1
    login(operator).get(MINE, REMOTE_ADDR="203.0.113.10")
    assert SecurityNotice.objects.count() == 2
    # An hour later the same person and address make a notice again.
    SecurityNotice.objects.update(created_at="2000-01-01T00:00:00Z")
    login(operator).get(MINE, REMOTE_ADDR=OUTSIDE)
    assert SecurityNotice.objects.count() == 3


def test_a_members_own_range_lets_them_and_only_them_in(operator, supervisor):
    do_add_network(operator.project, OFFICE, "Office")
    do_add_network(operator.project, "203.0.113.0/24", "Bob at home", membership=operator)
    assert login(operator).get(MINE, REMOTE_ADDR=OUTSIDE).status_code == 200
    assert login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR=OUTSIDE).status_code == 403


def test_ipv6_ranges_are_enforced(operator):
    do_add_network(operator.project, "2001:db8:1::/48", "Office v6")
    assert login(operator).get(MINE, REMOTE_ADDR="2001:db8:1::42").status_code == 200
    assert login(operator).get(MINE, REMOTE_ADDR="2001:db8:2::42").status_code == 403
    assert login(operator).get(MINE, REMOTE_ADDR=INSIDE).status_code == 403


def test_an_ipv4_mapped_peer_is_held_to_the_ipv4_range(operator):
    do_add_network(operator.project, OFFICE, "Office")
    assert login(operator).get(MINE, REMOTE_ADDR="::ffff:192.0.2.10").status_code == 200
    assert login(operator).get(MINE, REMOTE_ADDR="::ffff:203.0.113.9").status_code == 403


def test_account_pages_need_one_membership_that_allows_the_address(operator, other_project):
    do_add_member(other_project, operator.user, Role.OPERATOR)
    do_add_network(operator.project, OFFICE, "Office")
    client = login(operator)
    # The other project has no list: home and its pages are open, alpha's are not.
    assert client.get("/", REMOTE_ADDR=OUTSIDE).status_code == 200
    assert client.get("/p/beta/orders/mine/", REMOTE_ADDR=OUTSIDE).status_code == 200
    assert client.get(MINE, REMOTE_ADDR=OUTSIDE).status_code == 403


def test_when_every_membership_refuses_account_pages_refuse_too(operator, other_project):
    do_add_member(other_project, operator.user, Role.OPERATOR)
    do_add_network(operator.project, OFFICE, "Office")
    do_add_network(other_project, "198.51.100.0/24", "Beta office")
    response = login(operator).get("/", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    event = AuditEvent.objects.get(action="auth.ip_refused")
    assert event.project_id is None
    assert event.extra["projects"] == sorted([operator.project_id, other_project.pk])
    assert SecurityNotice.objects.filter(kind="refused_address").count() == 2


def test_a_deactivated_membership_neither_refuses_nor_admits(operator):
    do_add_network(operator.project, OFFICE, "Office")
    do_deactivate_member(operator)
    assert login(operator).get("/", REMOTE_ADDR=OUTSIDE).status_code == 200


def test_a_user_without_a_membership_is_held_to_no_list(project, outsider):
    do_add_network(project, OFFICE, "Office")
    client = Client()
    client.force_login(do_create_user("helper", PASSWORD, validate=False))
    assert client.get("/", REMOTE_ADDR=OUTSIDE).status_code == 200
    # A project page of a project one is not a member of answers 404 as ever, no refusal.
    assert login(outsider).get(MINE, REMOTE_ADDR=OUTSIDE).status_code == 404
    assert not AuditEvent.objects.filter(action="auth.ip_refused").exists()


def test_anonymous_pages_are_not_held_to_any_list(operator):
    do_add_network(operator.project, OFFICE, "Office")
    assert Client().get("/accounts/login/", REMOTE_ADDR=OUTSIDE).status_code == 200


# --- At login -------------------------------------------------------------------------------


def post_login(ip: str) -> tuple[Client, Any]:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = client.post(
        "/accounts/login/", {"username": "bob", "password": PASSWORD}, REMOTE_ADDR=ip
    )
    return client, response


def test_a_login_from_outside_is_refused_and_leaves_no_session(operator):
    do_add_network(operator.project, OFFICE, "Office")
    client, response = post_login(OUTSIDE)
    assert response.status_code == 403
    assert "Access from this address is not allowed" in response.content.decode()
    assert not Session.objects.exists()
    assert client.get("/", REMOTE_ADDR=OUTSIDE).status_code == 302
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions[-3:] == ["auth.login", "auth.ip_refused", "auth.logout"]
    assert SecurityNotice.objects.get().params == {"user": "bob", "ip": OUTSIDE}


def test_a_login_from_inside_goes_on(operator):
    do_add_network(operator.project, OFFICE, "Office")
    client, response = post_login(INSIDE)
    assert response.status_code == 302
    assert Session.objects.count() == 1
    assert client.get(MINE, REMOTE_ADDR=INSIDE).status_code == 200


def test_a_wrong_password_from_outside_is_an_ordinary_failed_login(operator):
    do_add_network(operator.project, OFFICE, "Office")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    response = client.post(
        "/accounts/login/", {"username": "bob", "password": "wrong"}, REMOTE_ADDR=OUTSIDE
    )
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="auth.ip_refused").exists()


# --- "Operators only from the office, everyone else with a second factor" ------------------


def free_role(member: Any) -> None:
    """The member's role may work from anywhere (RolePolicy.networks_required off)."""
    row = RolePolicy.objects.get(project_id=member.project_id, role=member.role)
    do_update_role_policy(row, networks_required=False)


def test_a_role_that_need_not_work_from_the_networks_comes_from_anywhere(operator, supervisor):
    do_add_network(operator.project, OFFICE, "Office")
    free_role(supervisor)
    assert login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR=OUTSIDE).status_code == 200
    assert login(operator).get(MINE, REMOTE_ADDR=OUTSIDE).status_code == 403
    assert not AuditEvent.objects.filter(action="auth.ip_refused", actor_name="sam").exists()


def test_a_members_own_ranges_hold_them_even_when_their_role_is_free(supervisor):
    free_role(supervisor)
    do_add_network(supervisor.project, "198.51.100.0/24", "Home", membership=supervisor)
    response = login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR="198.51.100.4").status_code == 200


def test_the_outside_rule_asks_a_free_role_for_a_second_factor_outside_the_office(supervisor):
    do_add_network(supervisor.project, OFFICE, "Office")
    free_role(supervisor)
    row = RolePolicy.objects.get(project_id=supervisor.project_id, role=supervisor.role)
    do_update_role_policy(row, two_factor=TwoFactorRule.OUTSIDE_ALLOWED_NETWORKS)
    inside = login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR=INSIDE)
    assert inside.status_code == 200
    outside = login(supervisor).get("/p/alpha/orders/", REMOTE_ADDR=OUTSIDE)
    assert outside.status_code == 302
    assert outside["Location"].startswith("/accounts/two-factor/")


def test_a_free_role_is_recorded_in_the_role_policy_change(supervisor):
    free_role(supervisor)
    event = AuditEvent.objects.filter(action="role_policy.update").latest("id")
    assert event.changes == {"networks_required": [True, False]}
    assert event.object_repr == Role.SUPERVISOR
