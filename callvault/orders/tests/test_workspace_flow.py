"""An operator's work from end to end, through the pages as a browser would post them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import assert_no_digits, event_text, reveal_e164
from callvault.orders.tests.workspace_support import card_url, login, new_order, url, whole_day


@pytest.fixture(autouse=True)
def always_calling_hours(project: Project) -> None:
    whole_day(project)


def test_an_operator_takes_the_next_order_upsells_and_approves_it(
    operator: Membership, project: Project, order: Order
) -> None:
    client = login(operator)
    gift = project.products.get(sku="GIFT")
    accepted = Status.objects.get(project=project, code="accepted")

    response = client.post(url("next"), follow=True)
    assert response.redirect_chain == [(card_url(order), 302)]
    assert response.context["held"] is True
    version = response.context["order"].version

    response = client.post(
        url("item_add", order.pk), {"product": gift.pk, "quantity": 1}, follow=True
    )
    upsell = order.items.get(product=gift)
    assert upsell.is_upsell

    response = client.post(url("item_quantity", order.pk, upsell.pk), {"quantity": 3}, follow=True)
    assert str(response.context["total"]) == "3150.00"  # 2 x 990 + 3 x 390

    body = {"status": accepted.pk, "version": version, "then": "mine"}
    response = client.post(url("status", order.pk), body, follow=True)
    assert response.redirect_chain == [(url("mine"), 302)]
    assert f"Order {order.number}: Accepted." in response.content.decode()
    saved = Order.objects.get(pk=order.pk)
    assert (saved.status, saved.locked_by, saved.in_queue) == (accepted, None, False)
    actions = list(
        AuditEvent.objects.filter(actor_id=str(operator.user_id))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "order.claim",
        "order.view",
        "order.item_add",
        "order.view",
        "order.item_change",
        "order.view",
        "order.status",
    ]
    # Finished and not assigned to them, the order is out of the operator's sight again.
    assert client.get(card_url(order)).status_code == 404


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_a_round_of_work_records_every_action_and_no_page_shows_the_digits(
    role: str, request: pytest.FixtureRequest, project: Project, rng
) -> None:
    member: Membership = request.getfixturevalue(role)
    raw = fake_phone_numbers(4, rng)
    first, second, third, fourth = (new_order(project, n, name=f"C{i}") for i, n in enumerate(raw))
    digits = [reveal_e164(o) for o in (first, second, third, fourth)]
    client = login(member)
    pages: list[str] = []

    def post(address: str, body: dict[str, object] | None = None, htmx: bool = False) -> Any:
        headers = {"HX-Request": "true"} if htmx else {}
        response = client.post(address, body or {}, follow=True, headers=headers)
        pages.append(response.content.decode())
        return response

    def version(order: Order) -> int:
        return Order.objects.get(pk=order.pk).version

    post(url("next"))
    pages.append(client.get(card_url(first)).content.decode())
    post(
        url("update", first.pk),
        {"customer_name": "C0 Smith", "address": "Tver", "version": version(first)},
    )
    post(
        url("item_add", first.pk),
        {"product": project.products.get(sku="GIFT").pk, "quantity": 2},
        htmx=True,
    )
    tea = first.items.get(product__sku="TEA")
    post(url("item_quantity", first.pk, tea.pk), {"quantity": 1}, htmx=True)
    post(url("item_remove", first.pk, tea.pk))
    post(url("comment", first.pk), {"text": "wants it gift-wrapped"})
    post(url("call", first.pk), htmx=True)
    accepted = Status.objects.get(project=project, code="accepted").pk
    response = post(
        url("status", first.pk), {"status": accepted, "version": version(first), "then": "next"}
    )
    assert response.redirect_chain[-1][0] == card_url(second)
    response = post(url("no_answer", second.pk), {"version": version(second), "then": "next"})
    assert response.redirect_chain[-1][0] == card_url(third)
    response = post(
        url("callback", third.pk), {"when": "2099-01-01T10:00", "version": version(third)}
    )
    assert "At most 90 days ahead." in response.content.decode()  # refused, then corrected
    # Two days ahead is ahead on any clock, whichever zone the customer's number is in.
    when = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = post(
        url("callback", third.pk), {"when": when, "version": version(third), "then": "next"}
    )
    assert response.redirect_chain[-1][0] == card_url(fourth)
    response = post(url("release", fourth.pk))
    assert response.redirect_chain[-1][0] == url("mine")
    pages.append(client.get(url("mine")).content.decode())

    recorded = {
        event.action: event
        for event in AuditEvent.objects.filter(actor_id=str(member.user_id)).order_by("id")
    }
    for action in (
        "order.claim",
        "order.update",
        "order.item_add",
        "order.item_change",
        "order.item_remove",
        "order.comment",
        "order.status",
        "order.no_answer",
        "order.callback",
        "order.release",
    ):
        event = recorded[action]
        assert event.changes, action
        for change in event.changes.values():
            assert isinstance(change, list) and len(change) == 2, (action, change)
            assert change[0] != change[1], (action, change)  # before -> after, really changed
    for event in AuditEvent.objects.all():
        assert_no_digits(event_text(event), *digits)
    assert len(pages) >= 14
    for page in pages:
        assert_no_digits(page, *digits)
