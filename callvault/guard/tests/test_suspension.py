"""A hard breach suspends a member only when the owner chose it; a suspended member reaches
nothing of the project until an owner lifts it."""

from __future__ import annotations

import contextlib

import pytest

from callvault.accounts.models import Membership, Role, SecurityNotice
from callvault.audit.models import ActorKind, AuditEvent
from callvault.guard.models import GuardSettings, QuotaKind, Suspension
from callvault.guard.quotas import (
    QuotaExceeded,
    breach_margin,
    charge,
    do_lift_suspension,
    do_set_quota,
    do_suspend_member,
)
from callvault.guard.tests.quota_support import guard_url, limit_member, login
from callvault.lib.errors import FieldErrors
from callvault.orders.tests.support import HttpsClient

CARD = QuotaKind.CARD_OPEN


def suspend_on_breach(project_id: int) -> None:
    # The leak-control settings page belongs to the alerts; here the flag is simply set.
    GuardSettings.objects.filter(project_id=project_id).update(suspend_on_breach=True)


def attempt(member: Membership, times: int) -> None:
    for _ in range(times):
        with contextlib.suppress(QuotaExceeded):
            charge(member, CARD)


def test_a_hard_breach_is_the_larger_of_five_attempts_and_a_tenth_of_the_limit():
    assert [breach_margin(n) for n in (0, 10, 50, 51, 300)] == [5, 5, 5, 6, 30]


@pytest.mark.django_db(transaction=True)
def test_going_on_past_a_quota_suspends_only_when_the_owner_chose_it(operator, owner):
    limit_member(operator, CARD, 2, owner)
    attempt(operator, 2 + 20)
    assert not Suspension.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_hard_breach_suspends_the_member_once_and_tells_the_owners(operator, owner):
    suspend_on_breach(operator.project_id)
    limit_member(operator, CARD, 2, owner)
    attempt(operator, 2 + 4)
    assert not Suspension.objects.exists()  # four refused attempts: not yet
    attempt(operator, 1 + 10)
    (row,) = Suspension.objects.all()
    assert (row.membership_id, row.lifted_at) == (operator.pk, None)
    assert row.reason == "Order cards opened per hour: 5 attempts past the limit of 2"
    event = AuditEvent.objects.get(action="suspension.create", object_id=str(row.pk))
    assert event.object_type == "suspension"
    assert event.changes["reason"] == [None, row.reason]
    assert (event.actor_kind, event.actor_name) == (ActorKind.SYSTEM, "system: quota breach")
    notice = SecurityNotice.objects.get(kind="suspended")
    assert notice.params == {"user": "bob", "quota": "Order cards opened per hour"}
    assert notice.user_id == operator.user_id


def test_owners_are_never_suspended(owner):
    suspend_on_breach(owner.project_id)
    do_set_quota(owner.project, CARD, 1, role=Role.OWNER, acting=owner)
    attempt(owner, 20)
    assert not Suspension.objects.exists()
    assert SecurityNotice.objects.filter(kind="quota_reached").count() == 1


def test_a_suspended_member_reaches_nothing_of_the_project(operator, owner, order, outsider):
    from callvault.accounts.actions import do_add_member

    do_add_member(outsider.project, operator.user, Role.OPERATOR)
    do_suspend_member(operator, kind=CARD, limit=2, count=7)
    client = login(operator)
    for path in ("/p/alpha/orders/mine/", f"/p/alpha/orders/{order.pk}/", "/p/alpha/orders/"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Your access to this project is suspended" in response.content.decode()
    assert client.post("/p/alpha/orders/next/").status_code == 403
    htmx = client.post(f"/p/alpha/orders/{order.pk}/call/", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx["HX-Refresh"]) == (403, "true")
    # Leaving, the language and their own account stay reachable.
    assert client.get("/accounts/sessions/").status_code == 200
    assert client.post("/i18n/setlang/", {"language": "ru"}).status_code == 302
    # Another member in the same project, and the same user elsewhere, are not affected.
    assert login(owner).get("/p/alpha/orders/").status_code == 200
    assert client.get("/p/beta/orders/mine/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302


def test_the_owner_lifts_a_suspension_and_the_member_works_again(operator, owner, order):
    row = do_suspend_member(operator, kind=CARD, limit=2, count=7)
    do_lift_suspension(row, acting=owner)
    row.refresh_from_db()
    assert row.lifted_by == owner.user
    assert row.lifted_at is not None
    event = AuditEvent.objects.get(action="suspension.lift", object_id=str(row.pk))
    assert event.changes["lifted_by"] == [None, owner.user_id]
    assert login(operator).get("/p/alpha/orders/mine/").status_code == 200
    with pytest.raises(FieldErrors):
        do_lift_suspension(row, acting=owner)  # once


def test_only_an_owner_lifts_a_suspension(operator, supervisor):
    row = do_suspend_member(operator, kind=CARD, limit=2, count=7)
    with pytest.raises(FieldErrors):
        do_lift_suspension(row, acting=supervisor)


# --- The owner's page ---------------------------------------------------------------------


def test_the_suspensions_page_sends_anonymous_visitors_to_login(project):
    response = HttpsClient().get(guard_url("suspensions"))
    assert response["Location"].startswith("/accounts/login/")


def test_the_suspensions_page_is_not_there_for_outsiders_and_non_owners(
    outsider, supervisor, operator
):
    for member in (outsider, supervisor, operator):
        assert login(member).get(guard_url("suspensions")).status_code == 404, member


def test_the_owner_sees_current_and_past_suspensions(operator, owner, trainee):
    lifted = do_suspend_member(trainee, kind=CARD, limit=2, count=7)
    do_lift_suspension(lifted, acting=owner)
    do_suspend_member(operator, kind=QuotaKind.SEARCH, limit=20, count=25)
    response = login(owner).get(guard_url("suspensions"))
    assert response.status_code == 200
    assert [r.membership.user.username for r in response.context["active"]] == ["bob"]
    assert [r.membership.user.username for r in response.context["past"]] == ["tina"]
    assert "Searches per hour: 5 attempts past the limit of 20" in response.content.decode()


def test_lifting_on_the_page_needs_a_fresh_step_up(operator, owner):
    row = do_suspend_member(operator, kind=CARD, limit=2, count=7)
    lift = guard_url("suspension_lift", "alpha", row.pk)
    response = login(owner).post(lift)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/step-up/")
    assert Suspension.objects.get().lifted_at is None
    assert login(owner, fresh=True).post(lift)["Location"] == guard_url("suspensions")
    assert Suspension.objects.get().lifted_by == owner.user


def test_nobody_but_the_owner_lifts_on_the_page(operator, owner, supervisor, outsider):
    row = do_suspend_member(operator, kind=CARD, limit=2, count=7)
    lift = guard_url("suspension_lift", "alpha", row.pk)
    assert HttpsClient().post(lift)["Location"].startswith("/accounts/login/")
    for member in (supervisor, outsider):
        assert login(member, fresh=True).post(lift).status_code == 404
    assert (
        login(outsider, fresh=True).post(guard_url("suspension_lift", "beta", row.pk)).status_code
        == 404
    )
    assert Suspension.objects.get().lifted_at is None
