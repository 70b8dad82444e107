"""The owner's lockouts page with unlocking, and the owner's "choose a new password"."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessFailureLog
from django.test import Client
from django.urls import reverse

from callvault.accounts.lockout import address_lock, username_lock
from callvault.accounts.models import Membership, Role
from callvault.audit.models import AuditEvent
from conftest import PASSWORD, login, make_member

OFFICE = "198.51.100.7"


def fail(username: str, times: int, ip: str = OFFICE) -> None:
    for _ in range(times):
        Client().post(
            reverse("login"), {"username": username, "password": "nope nope 1"}, REMOTE_ADDR=ip
        )


def page(project_slug: str = "alpha") -> str:
    return reverse("accounts:lockouts", args=[project_slug])


def unlock(project_slug: str = "alpha") -> str:
    return reverse("accounts:lockout_unlock", args=[project_slug])


def test_anonymous_is_sent_to_log_in(project):
    assert Client().get(page())["Location"].startswith("/accounts/login/")
    assert Client().post(unlock(), {"username": "bob"})["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("who", ["outsider", "operator", "supervisor"])
def test_only_an_owner_of_the_project_finds_the_page(request, owner, operator, who):
    client = login(request.getfixturevalue(who))
    fail("bob", 5)
    assert client.get(page()).status_code == 404
    assert client.post(unlock(), {"username": "bob"}).status_code == 404
    assert username_lock("bob") is not None


def test_the_owner_sees_a_locked_out_member(owner, operator):
    fail("bob", 5)
    response = login(owner).get(page())
    assert response.status_code == 200
    [row] = response.context["users"]
    assert (row.member, row.current) == (operator, True)
    assert "bob" in response.content.decode()


def test_the_owner_unlocks_a_member_who_can_then_log_in(owner, operator):
    fail("bob", 5)
    response = login(owner).post(unlock(), {"username": "bob"})
    assert response.status_code == 302
    assert username_lock("bob") is None
    event = AuditEvent.objects.get(action="auth.unlock")
    assert (event.project_id, event.object_type, event.object_id) == (
        operator.project_id,
        "user",
        str(operator.user_id),
    )
    assert event.actor_name == "alice"
    answer = Client().post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert answer.status_code == 302


def test_an_owner_cannot_unlock_someone_outside_the_project(owner, outsider):
    fail("charlie", 5)
    assert login(owner).post(unlock(), {"username": "charlie"}).status_code == 404
    assert login(owner).post(unlock(), {"address": "not an address"}).status_code == 404
    assert username_lock("charlie") is not None
    assert not AuditEvent.objects.filter(action="auth.unlock").exists()


def test_the_owner_sees_and_unlocks_an_address_their_members_use(owner, operator, settings):
    settings.LOCKOUT_ADDRESS_FAILURES = 6
    fail("bob", 1)
    for n in range(5):
        fail(f"guess{n}", 1)
    response = login(owner).get(page())
    assert [lock.key for lock in response.context["addresses"]] == [OFFICE]
    login(owner).post(unlock(), {"address": OFFICE})
    assert address_lock(OFFICE) is None
    assert not AccessFailureLog.objects.filter(ip_address=OFFICE).exists()
    assert AuditEvent.objects.get(action="auth.unlock").object_id == OFFICE


# --- "choose a new password" ----------------------------------------------------------------


def force_url(target: Membership) -> str:
    return reverse("accounts:member_force_password_change", args=[target.project.slug, target.pk])


def test_anonymous_cannot_require_a_new_password(operator):
    assert Client().post(force_url(operator))["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("who", ["outsider", "operator", "supervisor"])
def test_only_member_managers_of_the_project_may_require_a_new_password(
    request, trainee, operator, outsider, supervisor, who
):
    assert login(request.getfixturevalue(who)).post(force_url(trainee)).status_code == 404
    trainee.user.refresh_from_db()
    assert not trainee.user.must_change_password


def test_the_owner_requires_a_new_password_without_seeing_one(owner, operator):
    client = login(owner)
    assert client.get(force_url(operator)).status_code == 405
    response = client.post(force_url(operator))
    assert response.status_code == 302
    operator.user.refresh_from_db()
    assert operator.user.must_change_password
    event = AuditEvent.objects.get(action="user.password_change_required")
    assert event.changes == {"must_change_password": [False, True]}
    assert (event.object_type, event.object_id) == ("user", str(operator.user_id))
    # The member keeps the password but can do nothing else before changing it.
    member = Client()
    member.post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert member.get("/p/alpha/orders/mine/")["Location"] == "/accounts/password_change/"


def test_an_admin_may_not_require_a_new_password_of_the_owner(owner, project):
    admin = make_member(project, "adam", Role.ADMIN)
    response = login(admin).post(force_url(owner))
    assert response.status_code == 200
    assert response.context["error"]
    owner.user.refresh_from_db()
    assert not owner.user.must_change_password


def test_nobody_requires_a_new_password_of_themselves(owner: Any):
    response = login(owner).post(force_url(owner))
    assert response.context["error"]
    assert not AuditEvent.objects.filter(action="user.password_change_required").exists()
