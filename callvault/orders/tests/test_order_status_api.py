"""POST /api/v1/orders/{id}/status: an integration moves an order of its own project."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from callvault.accounts.models import Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Comment, Order, Status
from callvault.orders.tests.support import ORDERS_URL, HttpsClient, make_key

if TYPE_CHECKING:
    from callvault.orders.tests.support import Response

Phone = tuple[str, str]


def post_status(key: str | None, order_id: int, body: dict[str, str]) -> Response:
    headers: dict[str, Any] = {"HTTP_X_API_KEY": key} if key else {}
    return HttpsClient().post(
        f"{ORDERS_URL}/{order_id}/status", body, content_type="application/json", **headers
    )


def status_code_of(order: Order) -> str:
    return Order.objects.select_related("status").get(pk=order.pk).status.code


def test_it_changes_the_status_and_records_it(project: Project, api_key: str, order: Order) -> None:
    new = Status.objects.get(project=project, code="new")
    accepted = Status.objects.get(project=project, code="accepted")
    response = post_status(api_key, order.pk, {"status": "accepted"})
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert status_code_of(order) == "accepted"
    event = AuditEvent.objects.get(action="order.status", object_id=str(order.pk))
    assert event.changes["status"] == [new.code, accepted.code]
    assert event.actor_kind == ActorKind.API_KEY


@pytest.mark.parametrize("code", ["cancelled", "spam"])
def test_it_requires_a_reason_for_some_statuses(api_key: str, order: Order, code: str) -> None:
    response = post_status(api_key, order.pk, {"status": code, "reason": "  "})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "reason"]]
    assert status_code_of(order) == "new"
    assert not AuditEvent.objects.filter(action="order.status").exists()


def test_it_keeps_the_reason_as_a_comment(api_key: str, order: Order) -> None:
    response = post_status(api_key, order.pk, {"status": "cancelled", "reason": "changed mind"})
    assert response.status_code == 200
    assert status_code_of(order) == "cancelled"
    assert Comment.objects.get(order=order).text == "changed mind"
    event = AuditEvent.objects.get(action="order.status")
    assert event.extra["reason"] == "changed mind"


def test_it_rejects_an_unknown_status(api_key: str, order: Order) -> None:
    response = post_status(api_key, order.pk, {"status": "teleported"})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "status"]]
    assert status_code_of(order) == "new"


def test_it_rejects_a_status_only_another_project_has(
    other_project: Project, api_key: str, order: Order
) -> None:
    Status.objects.create(project=other_project, code="lost", name="Lost", group="cancelled")
    response = post_status(api_key, order.pk, {"status": "lost"})
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "status"]]
    assert status_code_of(order) == "new"


def test_it_hides_another_projects_order(
    other_project: Project, api_key: str, phone: Phone
) -> None:
    theirs = do_create_order(other_project, Lead(phone=phone[0])).order
    response = post_status(api_key, theirs.pk, {"status": "accepted"})
    assert response.status_code == 404
    assert status_code_of(theirs) == "new"


def test_it_forbids_a_key_that_may_not_update(project: Project, order: Order) -> None:
    key = make_key(project, can_read_orders=True)
    response = post_status(key, order.pk, {"status": "accepted"})
    assert response.status_code == 403
    assert status_code_of(order) == "new"


def test_it_refuses_a_request_without_a_key(order: Order) -> None:
    assert post_status(None, order.pk, {"status": "accepted"}).status_code == 401
    assert status_code_of(order) == "new"
