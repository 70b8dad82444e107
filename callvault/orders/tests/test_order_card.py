"""The order card /p/<slug>/orders/<id>/ and its reveal: recorded reads, digits by permission."""

from __future__ import annotations

import time

import pytest

from callvault.accounts import stepup
from callvault.accounts.models import Membership, Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.orders.actions import do_add_comment, do_assign_order
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, assert_no_digits, event_text, login

Phone = tuple[str, str]


def card_url(order: Order, slug: str = "alpha") -> str:
    return f"/p/{slug}/orders/{order.pk}/"


def reveal_url(order: Order, slug: str = "alpha") -> str:
    return f"/p/{slug}/orders/{order.pk}/reveal/"


def stepped_up(member: Membership) -> HttpsClient:
    """A client logged in as the member, who has just proved who they are (step-up)."""
    client = login(member)
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    return client


def test_it_sends_anonymous_visitors_to_login(order: Order) -> None:
    for response in (HttpsClient().get(card_url(order)), HttpsClient().post(reveal_url(order))):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert not AuditEvent.objects.filter(action__in=["order.view", "phone.reveal"]).exists()


def test_it_hides_the_order_from_an_outsider(outsider: Membership, order: Order) -> None:
    client = login(outsider)
    assert client.get(card_url(order)).status_code == 404
    assert client.post(reveal_url(order), {"purpose": "curious"}).status_code == 404
    # Not under their own project's address either.
    assert client.get(card_url(order, slug="beta")).status_code == 404
    assert client.post(reveal_url(order, slug="beta"), {"purpose": "x"}).status_code == 404
    assert not AuditEvent.objects.filter(
        action__in=["order.view", "phone.reveal", "phone.reveal_refused"]
    ).exists()


@pytest.mark.parametrize("role", ["operator"])
def test_an_operator_opens_only_orders_assigned_to_them(
    role: str, request: pytest.FixtureRequest, project: Project, order: Order, phone: Phone
) -> None:
    member: Membership = request.getfixturevalue(role)
    client = login(member)
    assert client.get(card_url(order)).status_code == 404
    assert client.post(reveal_url(order), {"purpose": "call"}).status_code == 404
    do_assign_order(order, member.user)
    assert client.get(card_url(order)).status_code == 200


def test_a_supervisor_opens_any_order_of_the_project(
    supervisor: Membership, operator: Membership, order: Order
) -> None:
    do_assign_order(order, operator.user)
    response = login(supervisor).get(card_url(order))
    assert response.status_code == 200
    assert response.context["order"] == order


def test_opening_a_card_is_recorded(supervisor: Membership, order: Order) -> None:
    login(supervisor).get(card_url(order))
    event = AuditEvent.objects.get(action="order.view")
    assert (event.object_type, event.object_id) == ("order", str(order.pk))
    assert (event.actor_kind, event.actor_id) == (ActorKind.MEMBER, str(supervisor.user_id))
    assert event.project_id == order.project_id


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_no_card_shows_the_digits(
    role: str, request: pytest.FixtureRequest, order: Order, phone: Phone
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, member.user)
    do_add_comment(order, "asked to call after six", author=member.user)
    client = stepped_up(member)
    pages = [client.get(card_url(order)), client.post(reveal_url(order), {"purpose": "call"})]
    assert [p.status_code for p in pages] == [200, 403]
    for response in pages:
        assert_no_digits(response.content.decode(), phone[1])


def test_a_supervisor_may_not_reveal_and_the_try_is_recorded(
    supervisor: Membership, order: Order, phone: Phone
) -> None:
    response = stepped_up(supervisor).post(reveal_url(order), {"purpose": "checking"})
    assert response.status_code == 403
    assert_no_digits(response.content.decode(), phone[1])
    event = AuditEvent.objects.get(action="phone.reveal_refused")
    assert (event.object_id, event.actor_id) == (str(order.pk), str(supervisor.user_id))
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()


def test_an_owner_must_say_why(owner: Membership, order: Order, phone: Phone) -> None:
    response = stepped_up(owner).post(reveal_url(order), {"purpose": "   "})
    assert response.status_code == 200
    assert response.context["reveal_error"]
    assert response.context["revealed"] is None
    assert_no_digits(response.content.decode(), phone[1])
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()


def test_an_owner_sees_the_number_for_a_purpose(
    owner: Membership, order: Order, phone: Phone
) -> None:
    response = stepped_up(owner).post(
        reveal_url(order), {"purpose": "customer asked for a callback"}
    )
    assert response.status_code == 200
    assert phone[1] in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.get(action="phone.reveal")
    assert (event.object_id, event.actor_id) == (str(order.pk), str(owner.user_id))
    assert event.extra["purpose"] == "customer asked for a callback"
    assert_no_digits(event_text(event), phone[1])


def test_the_owner_card_is_masked_until_revealed(
    owner: Membership, order: Order, phone: Phone
) -> None:
    response = login(owner).get(card_url(order))
    assert response.status_code == 200
    assert_no_digits(response.content.decode(), phone[1])


def test_reveal_takes_only_post(owner: Membership, order: Order) -> None:
    assert login(owner).get(reveal_url(order)).status_code == 405
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()


def test_an_owner_cannot_reveal_another_projects_order_through_their_project(
    owner: Membership, other_project: Project, phone: Phone
) -> None:
    theirs = do_create_order(other_project, Lead(phone=phone[0])).order
    response = login(owner).post(reveal_url(theirs), {"purpose": "curious"})
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()


def test_a_comment_quoting_the_phone_does_not_show_the_digits(
    operator: Membership, project: Project, phone: Phone
) -> None:
    lead = Lead(phone=phone[0], comment=f"my second phone is {phone[0]}")
    order = do_create_order(project, lead).order
    do_assign_order(order, operator.user)
    response = login(operator).get(card_url(order))
    assert response.status_code == 200
    assert_no_digits(response.content.decode(), phone[1])


def test_without_a_fresh_proof_the_number_stays_hidden_and_nothing_is_recorded(
    owner: Membership, order: Order, phone: Phone
) -> None:
    client = login(owner)
    response = client.post(
        reveal_url(order),
        {"purpose": "delivery"},
        HTTP_REFERER=f"https://testserver{card_url(order)}",
    )
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/step-up/?next=%2Fp%2Falpha%2Forders%2F{order.pk}%2F"
    assert_no_digits(response.content.decode(), phone[1])
    assert not AuditEvent.objects.filter(action__startswith="phone.reveal").exists()


def test_a_stale_proof_is_not_enough(owner: Membership, order: Order, phone: Phone) -> None:
    client = login(owner)
    session = client.session
    session[stepup.SESSION_KEY] = time.time() - 6 * 60  # the policy's window is 5 minutes
    session.save()
    response = client.post(reveal_url(order), {"purpose": "delivery"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/accounts/step-up/")
    assert not AuditEvent.objects.filter(action__startswith="phone.reveal").exists()
