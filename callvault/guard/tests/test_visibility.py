"""Who sees which orders: `Order.objects.visible_to` for every role, a support grant's
transient membership, and a trainee's pages, which show only the order in their hands."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.http import Http404
from django.utils import timezone

from callvault.accounts import twofactor
from callvault.accounts.actions import do_add_member, do_change_password, do_create_user
from callvault.accounts.models import Membership, Project, Role, access_membership
from callvault.accounts.support import (
    do_create_support_account,
    do_grant_support_access,
    do_revoke_support_access,
    support_membership,
)
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order, access_order_by_id, sees_only_held
from callvault.orders.queue import claim_next, do_schedule_callback
from callvault.orders.tests.support import assert_no_digits, reveal_e164
from callvault.orders.tests.workspace_support import card_url, login, url, whole_day
from conftest import PASSWORD


def make_orders(project: Project, count: int, rng: random.Random) -> list[Order]:
    return [
        do_create_order(
            project, Lead(phone=typed, name=f"Customer {i}", items=[LeadItem("TEA")])
        ).order
        for i, typed in enumerate(fake_phone_numbers(count, rng))
    ]


def hold(order: Order, member: Membership, minutes: int = 15) -> None:
    """The queue handed the order to the member (the hold is not audited: see bypass.py)."""
    Order.objects.filter(pk=order.pk).update(
        locked_by=member.user, locked_until=timezone.now() + timedelta(minutes=minutes)
    )


def seen(member: Membership) -> set[int]:
    return set(Order.objects.visible_to(member).values_list("pk", flat=True))


# --- the chokepoint, role by role ------------------------------------------------------------


def test_a_trainee_sees_only_the_order_in_their_hands(
    trainee: Membership, project: Project, rng: random.Random
) -> None:
    held, assigned_earlier, _someone_elses = make_orders(project, 3, rng)
    do_assign_order(assigned_earlier, trainee.user)
    hold(held, trainee)
    assert seen(trainee) == {held.pk}
    assert sees_only_held(trainee)
    with pytest.raises(Http404):
        access_order_by_id(trainee, assigned_earlier.pk)


def test_a_trainee_sees_nothing_once_the_hold_expires(
    trainee: Membership, project: Project, rng: random.Random
) -> None:
    (order,) = make_orders(project, 1, rng)
    do_assign_order(order, trainee.user)  # assigned to them, yet not in their hands
    Order.objects.filter(pk=order.pk).update(
        locked_by=trainee.user, locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert seen(trainee) == set()


def test_a_trainee_whom_an_owner_lets_view_all_orders_sees_them(
    trainee: Membership, project: Project, rng: random.Random
) -> None:
    orders = make_orders(project, 2, rng)
    trainee.can_view_all_orders = True  # the capability, not the role, decides
    assert not sees_only_held(trainee)
    assert seen(trainee) == {o.pk for o in orders}


def test_an_operator_sees_what_is_assigned_to_them_and_what_they_hold(
    operator: Membership, trainee: Membership, project: Project, rng: random.Random
) -> None:
    assigned, held, trainees, _free, expired = make_orders(project, 5, rng)
    do_assign_order(assigned, operator.user)
    hold(held, operator)
    hold(trainees, trainee)
    Order.objects.filter(pk=expired.pk).update(
        locked_by=operator.user, locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert seen(operator) == {assigned.pk, held.pk}
    assert not sees_only_held(operator)


@pytest.mark.parametrize("role", ["supervisor", "owner"])
def test_members_who_may_view_all_orders_see_the_whole_project_and_nothing_else(
    role: str,
    request: pytest.FixtureRequest,
    project: Project,
    other_project: Project,
    rng: random.Random,
) -> None:
    member: Membership = request.getfixturevalue(role)
    mine = make_orders(project, 3, rng)
    make_orders(other_project, 2, rng)
    assert seen(member) == {o.pk for o in mine}


def test_an_admin_sees_the_whole_project(project: Project, rng: random.Random) -> None:
    admin = do_add_member(project, do_create_user("adam", PASSWORD, validate=False), Role.ADMIN)
    orders = make_orders(project, 2, rng)
    assert seen(admin) == {o.pk for o in orders}


@pytest.mark.parametrize("role", ["operator", "trainee", "supervisor"])
def test_an_inactive_member_sees_nothing(
    role: str, request: pytest.FixtureRequest, project: Project, rng: random.Random
) -> None:
    member: Membership = request.getfixturevalue(role)
    (order,) = make_orders(project, 1, rng)
    do_assign_order(order, member.user)
    hold(order, member)
    member.is_active = False
    assert seen(member) == set()


# --- support grants ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("read_only", "may_see_phones"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_a_support_grant_reads_through_the_same_chokepoint(
    owner: Membership,
    project: Project,
    other_project: Project,
    rng: random.Random,
    read_only: bool,
    may_see_phones: bool,
) -> None:
    mine = make_orders(project, 2, rng)
    make_orders(other_project, 2, rng)
    account = do_create_support_account("vendor-kim", PASSWORD)
    grant, _ = do_grant_support_access(
        project,
        hours=1,
        reason="ticket 42",
        account=account,
        read_only=read_only,
        may_see_phones=may_see_phones,
        acting=owner,
    )
    member = access_membership(account, project.slug)
    assert member.pk is None  # transient: no row
    assert (member.can_edit_orders, member.can_see_phones) == (not read_only, may_see_phones)
    # Its scope comes from the grant's flags through the same chokepoint as everyone's.
    assert seen(member) == {o.pk for o in mine}
    with pytest.raises(Http404):
        support_membership(account, other_project.slug)
    do_revoke_support_access(grant, acting=owner)
    with pytest.raises(Http404):
        access_membership(account, project.slug)


def test_a_support_account_opens_the_projects_orders_only(
    owner: Membership,
    project: Project,
    other_project: Project,
    rng: random.Random,
) -> None:
    (mine,) = make_orders(project, 1, rng)
    (theirs,) = make_orders(other_project, 1, rng)
    account = do_change_password(
        do_create_support_account("vendor-kim", PASSWORD), "kim's own vendor passphrase 2026"
    )
    do_grant_support_access(project, hours=1, reason="ticket 42", account=account, acting=owner)
    client = login(Membership(user=account))
    session = client.session  # past the second factor a named support account must use
    session[twofactor.VERIFIED_SESSION_KEY] = account.pk
    session.save()
    assert client.get(card_url(mine)).status_code == 200
    assert client.get(card_url(theirs, slug="beta")).status_code == 404
    assert client.get(f"/p/alpha/orders/{theirs.pk}/").status_code == 404


# --- a trainee's pages -----------------------------------------------------------------------


def test_a_trainees_my_orders_shows_only_the_held_order_and_says_why(
    trainee: Membership, project: Project, rng: random.Random
) -> None:
    held, assigned_earlier = make_orders(project, 2, rng)
    do_assign_order(assigned_earlier, trainee.user)
    hold(held, trainee)
    response = login(trainee).get(url("mine"))
    assert response.status_code == 200
    assert [row["order"].pk for row in response.context["rows"]] == [held.pk]
    page = response.content.decode()
    assert "you see only the order in your hands" in page
    assert "All orders assigned to me" not in page
    assert card_url(assigned_earlier) not in page


def test_an_operators_my_orders_does_not_say_the_trainees_rule(
    operator: Membership, project: Project, rng: random.Random
) -> None:
    (order,) = make_orders(project, 1, rng)
    do_assign_order(order, operator.user)
    page = login(operator).get(url("mine")).content.decode()
    assert "you see only the order in your hands" not in page
    assert card_url(order) in page


def test_a_trainee_works_the_held_order_and_no_page_shows_the_digits(
    trainee: Membership, project: Project, rng: random.Random
) -> None:
    held, assigned_earlier = make_orders(project, 2, rng)
    do_assign_order(assigned_earlier, trainee.user)
    hold(held, trainee)
    client = login(trainee)
    card, listing, mine = (
        client.get(card_url(held)),
        client.get(url("list")),
        client.get(url("mine")),
    )
    assert [card.status_code, listing.status_code, mine.status_code] == [200, 200, 200]
    for response in (card, listing, mine):
        assert_no_digits(response.content.decode(), reveal_e164(held))
    assert card_url(held) in listing.content.decode()
    assert card_url(assigned_earlier) not in listing.content.decode()
    assert client.get(card_url(assigned_earlier)).status_code == 404


def test_a_trainees_callback_comes_back_through_the_queue_not_a_list(
    trainee: Membership,
    operator: Membership,
    project: Project,
    rng: random.Random,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole_day(project)
    (order,) = make_orders(project, 1, rng)
    claimed = claim_next(trainee)
    assert claimed is not None and claimed.pk == order.pk
    assert seen(trainee) == {order.pk}
    do_schedule_callback(claimed, timezone.now() + timedelta(hours=1))
    assert Order.objects.get(pk=order.pk).assigned_to_id == trainee.user_id
    assert seen(trainee) == set()
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    assert claim_next(operator) is None  # the callback stays with the trainee
    again = claim_next(trainee)
    assert again is not None and again.pk == order.pk
    assert seen(trainee) == {order.pk}
