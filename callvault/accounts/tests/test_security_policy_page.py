"""The owner's security policy page: owners only, behind a step-up, saved through the
audited actions, with errors shown by field."""

from __future__ import annotations

import time
from typing import Any

from django.test import Client
from django.urls import reverse

from callvault.accounts import stepup
from callvault.accounts.models import Membership, Role, RolePolicy, SecurityPolicy
from callvault.audit.models import AuditEvent
from conftest import login

URL = reverse("accounts:security", args=["alpha"])


def stepped_up(member: Membership) -> Client:
    client = login(member)
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    return client


def form_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "password_min_length": 12,
        "password_min_score": 3,
        "password_max_age_days": "",
        "session_max_hours": 12,
        "step_up_minutes": 5,
    }
    for role in Role.values:
        data[f"{role}-two_factor"] = "optional"
        data[f"{role}-idle_minutes"] = 10 if role in ("operator", "trainee") else 30
        data[f"{role}-networks_required"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not False}


def test_an_anonymous_visitor_is_sent_to_login():
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_outsiders_and_members_who_are_not_owners_get_not_found(outsider, supervisor, operator):
    for member in (outsider, supervisor, operator):
        assert stepped_up(member).get(URL).status_code == 404, member.role
        assert stepped_up(member).post(URL, form_data()).status_code == 404, member.role


def test_an_owner_must_step_up_first(owner):
    response = login(owner).get(URL)
    assert response.status_code == 302
    assert response["Location"] == stepup.step_up_url(URL)
    assert login(owner).post(URL, form_data(session_max_hours=2)).status_code == 302
    assert SecurityPolicy.objects.get(project=owner.project).session_max_hours == 12


def test_the_page_shows_the_policy_the_roles_and_why_passwords_do_not_expire(owner):
    page = stepped_up(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'name="session_max_hours"' in text and 'name="operator-idle_minutes"' in text
    assert "NIST SP 800-63B" in text and "Require a new password" in text


def test_an_owner_saves_the_policy_and_the_roles_and_both_are_recorded(owner, project):
    client = stepped_up(owner)
    response = client.post(
        URL,
        form_data(
            session_max_hours=8,
            one_session_per_operator="on",
            **{
                "operator-idle_minutes": 5,
                "trainee-two_factor": "required",
                "supervisor-networks_required": False,
            },
        ),
    )
    assert response.status_code == 302 and response["Location"] == URL
    policy = SecurityPolicy.objects.get(project=project)
    assert (policy.session_max_hours, policy.one_session_per_operator) == (8, True)
    operator_row = RolePolicy.objects.get(project=project, role=Role.OPERATOR)
    trainee_row = RolePolicy.objects.get(project=project, role=Role.TRAINEE)
    assert (operator_row.idle_minutes, trainee_row.two_factor) == (5, "required")
    update = AuditEvent.objects.get(action="security_policy.update")
    assert update.changes == {
        "one_session_per_operator": [False, True],
        "session_max_hours": [12, 8],
    }
    assert update.actor_name == "alice"
    roles = AuditEvent.objects.filter(action="role_policy.update").order_by("id")
    assert [e.object_repr for e in roles] == ["supervisor", "operator", "trainee"]
    assert roles[0].changes == {"networks_required": [True, False]}


def test_a_value_out_of_bounds_is_shown_at_its_field_and_nothing_is_saved(owner, project):
    client = stepped_up(owner)
    response = client.post(
        URL,
        form_data(session_max_hours=0, **{"operator-idle_minutes": 5}),
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert "Must be between 1 and 720." in response.content.decode()
    assert SecurityPolicy.objects.get(project=project).session_max_hours == 12
    assert RolePolicy.objects.get(project=project, role=Role.OPERATOR).idle_minutes == 10
    assert not AuditEvent.objects.filter(action__endswith="policy.update").exists()


def test_a_bad_idle_time_is_shown_at_its_role(owner, project):
    response = stepped_up(owner).post(
        URL, form_data(**{"trainee-idle_minutes": 0}), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert RolePolicy.objects.get(project=project, role=Role.TRAINEE).idle_minutes == 10


def test_an_owner_outside_the_networks_cannot_hold_their_own_role_to_them(owner, project):
    from callvault.accounts.allowlist import do_add_network
    from callvault.accounts.policy import do_update_role_policy

    do_add_network(project, "192.0.2.0/24", "Office")
    row = RolePolicy.objects.get(project=project, role=Role.OWNER)
    do_update_role_policy(row, networks_required=False)  # the owner works from anywhere
    client = stepped_up(owner)
    data = form_data()  # every role "only from the allowed networks", the owner's included
    response = client.post(URL, data, REMOTE_ADDR="203.0.113.9", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "Your address is outside the allowed networks" in response.content.decode()
    assert not RolePolicy.objects.get(pk=row.pk).networks_required  # nothing saved
    inside = client.post(URL, data, REMOTE_ADDR="192.0.2.7")
    assert inside.status_code == 302
    assert RolePolicy.objects.get(pk=row.pk).networks_required
