"""The audit API: /api/v1/audit/events and /api/v1/audit/orders/<id>/history."""

from __future__ import annotations

import json

from django.test import Client

from callvault.accounts.models import Project
from callvault.audit.models import AuditEvent
from callvault.audit.tests.viewer_support import event
from callvault.orders.models import Order
from callvault.orders.tests.support import assert_no_digits, get_api, make_key, styles_of

Phone = tuple[str, str]
EVENTS = "/api/v1/audit/events"


def history(order: Order | int) -> str:
    return f"/api/v1/audit/orders/{getattr(order, 'pk', order)}/history"


def test_it_needs_a_key(order: Order) -> None:
    assert Client().get(EVENTS).status_code == 401
    assert Client().get(history(order)).status_code == 401
    assert get_api(Client(), "cvk_nope_nope", EVENTS).status_code == 401


def test_it_needs_the_read_scope(project: Project, order: Order) -> None:
    key = make_key(project)  # may only post leads
    assert get_api(Client(), key, EVENTS).status_code == 403
    assert get_api(Client(), key, history(order)).status_code == 403
    # Reading orders is not reading who handled them and from where.
    reader = make_key(project, can_read_orders=True, can_update_orders=True)
    assert get_api(Client(), reader, EVENTS).status_code == 403
    assert get_api(Client(), reader, history(order)).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()


def test_another_projects_key_finds_no_such_order(other_project: Project, order: Order) -> None:
    key = make_key(other_project, can_read_audit=True)
    assert get_api(Client(), key, history(order)).status_code == 404
    body = get_api(Client(), key, EVENTS, object_type="order", object_id=str(order.pk)).json()
    assert body["items"] == []


def test_it_lists_the_projects_events_newest_first_with_readable_changes(
    project: Project, other_project: Project
) -> None:
    key = make_key(project, can_read_audit=True)
    older = event(project.pk, action="order.status", changes={"status": ["new", "accepted"]})
    newer = event(project.pk, action="order.update", changes={"phone": "changed"})
    event(other_project.pk, action="order.status")
    body = get_api(Client(), key, EVENTS, action="order.", object_type="order").json()
    assert [i["id"] for i in body["items"]] == [newer.pk, older.pk]
    assert body["items"][1]["changes"][0] | {"label": ""} == {
        "field": "status",
        "label": "",
        "before": "new",
        "after": "accepted",
        "hidden": False,
    }
    assert body["items"][0]["changes"][0]["hidden"] is True
    assert body["items"][0]["changes"][0]["before"] is None


def test_the_filters_narrow_and_ip_takes_networks(project: Project) -> None:
    key = make_key(project, can_read_audit=True)
    v4 = event(project.pk, ip="10.4.0.1", actor_id="7")
    v6 = event(project.pk, ip="2001:db8:4::1", actor_id="8")
    client = Client()

    def found(**params: str) -> set[int]:
        return {i["id"] for i in get_api(client, key, EVENTS, **params).json()["items"]}

    assert found(ip="10.4.0.0/16") == {v4.pk}
    assert found(ip="2001:db8:4::/48") == {v6.pk}
    assert found(member="8") == {v6.pk}
    assert get_api(client, key, EVENTS, ip="not-an-ip").status_code == 422


def test_pages_return_every_event_exactly_once(project: Project) -> None:
    key = make_key(project, can_read_audit=True)
    made = [event(project.pk, object_type="thing").pk for _ in range(7)]
    seen: list[int] = []
    params: dict[str, str] = {"object_type": "thing", "limit": "3"}
    for _ in range(5):
        body = get_api(Client(), key, EVENTS, **params).json()
        seen += [i["id"] for i in body["items"]]
        if body["next_before"] is None:
            break
        params["before"] = str(body["next_before"])
    assert seen == sorted(made, reverse=True)


def test_an_orders_history_is_its_events_and_reading_it_is_recorded(
    project: Project, order: Order
) -> None:
    key = make_key(project, can_read_audit=True)
    event(project.pk, object_id="999999")
    body = get_api(Client(), key, history(order)).json()
    assert {i["object_id"] for i in body["items"]} == {str(order.pk)}
    assert "order.create" in {i["action"] for i in body["items"]}
    viewed = AuditEvent.objects.get(action="audit.view")
    assert (viewed.actor_kind, viewed.object_id) == ("api_key", str(order.pk))
    get_api(Client(), key, EVENTS)
    assert AuditEvent.objects.filter(action="audit.search", actor_kind="api_key").exists()


def test_the_json_carries_no_digits(project: Project, order: Order, phone: Phone) -> None:
    key = make_key(project, can_read_audit=True)
    for typed in styles_of(phone[1]):
        event(
            project.pk,
            action="order.update",
            object_id=str(order.pk),
            changes={"address": ["", f"call {typed}"], "phone": "changed"},
        )
    for path in (EVENTS, history(order)):
        text = json.dumps(get_api(Client(), key, path).json())
        assert "[redacted]" in text
        assert_no_digits(text, phone[1])
