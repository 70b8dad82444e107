"""The History tab of the order card: before -> after with who, when and from where."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.tests.viewer_support import acting, english, event
from callvault.orders.actions import do_assign_order, do_change_status, do_update_order
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import assert_no_digits, styles_of
from callvault.vault.actions import reveal

Phone = tuple[str, str]


def card(order: Order) -> str:
    return f"/p/alpha/orders/{order.pk}/"


def test_history_shows_a_status_change_with_actor_time_and_address(
    supervisor: Membership, operator: Membership, project: Project, order: Order
) -> None:
    accepted = Status.objects.get(project=project, code="accepted")
    with acting(operator, ip="203.0.113.44"):
        do_change_status(order, accepted)
    changed = AuditEvent.objects.get(action="order.status")
    response = english(supervisor).get(card(order))
    page = response.content.decode()
    assert 'id="history"' in page
    assert "Status changed" in page and 'title="order.status"' in page
    assert "new → accepted" in page
    assert "bob" in page and "203.0.113.44" in page
    # The time on the project's clock (Moscow, UTC+3).
    local = changed.created_at.astimezone(ZoneInfo(project.time_zone))
    assert local.strftime("%Y-%m-%d %H:%M:%S") in page


def test_history_shows_the_reads_of_the_card_and_of_the_number(
    owner: Membership, supervisor: Membership, order: Order
) -> None:
    with acting(owner, ip="198.51.100.5"):
        reveal(owner, order, "customer asked for a callback")
    english(supervisor).get(card(order))  # a card opened
    page = english(supervisor).get(card(order)).content.decode()
    assert "Number revealed" in page and "customer asked for a callback" in page
    assert "Card opened" in page and "198.51.100.5" in page


def test_a_sealed_change_says_only_that_it_changed(supervisor: Membership, order: Order) -> None:
    do_update_order(order, {"phone": "+1 212 555 0199"})
    page = english(supervisor).get(card(order)).content.decode()
    assert "Phone</b>: <i>changed (hidden)</i>" in page
    assert "0199" not in page


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_an_operator_sees_no_history(
    role: str, request: pytest.FixtureRequest, order: Order
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, member.user)
    page = english(member).get(card(order)).content.decode()
    assert 'id="history"' not in page
    assert not AuditEvent.objects.filter(action="audit.view").exists()


def test_viewing_the_history_is_recorded(supervisor: Membership, order: Order) -> None:
    english(supervisor).get(card(order))
    viewed = AuditEvent.objects.get(action="audit.view")
    assert (viewed.object_type, viewed.object_id) == ("order", str(order.pk))
    assert viewed.actor_id == str(supervisor.user_id)


def test_history_holds_only_this_projects_events_about_the_order(
    supervisor: Membership, other_project: Project, order: Order
) -> None:
    event(other_project.pk, object_id=str(order.pk), actor_name="beta-actor")
    page = english(supervisor).get(card(order)).content.decode()
    assert "beta-actor" not in page


def test_unattributed_changes_stand_out_in_the_history(
    supervisor: Membership, order: Order
) -> None:
    event(
        order.project_id,
        object_id=str(order.pk),
        action="order.update",
        actor_kind=ActorKind.UNATTRIBUTED,
        actor_id="",
        actor_name="",
        changes={"attempts": [0, 9]},
    )
    page = english(supervisor).get(card(order)).content.decode()
    assert "unattributed!" in page and "0 → 9" in page


def test_history_carries_no_digits(supervisor: Membership, order: Order, phone: Phone) -> None:
    for typed in styles_of(phone[1]):
        event(
            order.project_id,
            object_id=str(order.pk),
            action="order.update",
            changes={"address": ["", f"call {typed}"], "comment 5": [None, typed]},
        )
    page = english(supervisor).get(card(order)).content.decode()
    assert "Comment 5" in page
    assert_no_digits(page, phone[1])
