"""Probing the base leaves a trace: a card one may not see and a search one may not make are
refused as before (404, 403) and recorded, without the order's data or the searched text."""

from __future__ import annotations

from callvault.audit.models import AuditEvent
from conftest import login


def test_a_card_of_someone_elses_order_is_refused_and_recorded(operator, order):
    response = login(operator).get(f"/p/alpha/orders/{order.pk}/")
    assert response.status_code == 404
    event = AuditEvent.objects.get(action="order.view_refused")
    assert (event.object_type, event.object_id, event.actor_name) == ("order", str(order.pk), "bob")
    assert event.project_id == operator.project_id
    assert not AuditEvent.objects.filter(action="order.view").exists()


def test_a_card_that_does_not_exist_is_refused_the_same_way(operator, order):
    missing = login(operator).get(f"/p/alpha/orders/{order.pk + 1000}/")
    other = login(operator).get(f"/p/alpha/orders/{order.pk}/")
    assert missing.status_code == other.status_code == 404
    assert AuditEvent.objects.filter(action="order.view_refused").count() == 2


def test_a_card_one_may_see_is_not_a_refusal(supervisor, order):
    assert login(supervisor).get(f"/p/alpha/orders/{order.pk}/").status_code == 200
    assert not AuditEvent.objects.filter(action="order.view_refused").exists()


def test_a_search_by_someone_who_may_not_search_is_refused_and_recorded_without_the_query(
    operator, phone
):
    response = login(operator).post("/p/alpha/orders/", {"q": phone[0]})
    assert response.status_code == 403
    event = AuditEvent.objects.get(action="order.search_refused")
    assert event.actor_name == "bob"
    digits = "".join(c for c in phone[1] if c.isdigit())
    assert digits[-7:] not in str(event.extra) + str(event.changes)
    assert not AuditEvent.objects.filter(action="order.search").exists()
