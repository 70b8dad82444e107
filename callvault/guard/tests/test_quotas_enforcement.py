"""Each counted action refuses at its quota, says why, and does nothing past it."""

from __future__ import annotations

from typing import Any

import pytest

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.guard.models import QuotaKind
from callvault.guard.quotas import do_set_quota
from callvault.guard.tests.quota_support import limit_member, login
from callvault.lib.fakephones import fake_phone
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, assert_no_digits

Phone = tuple[str, str]


def card(order: Order) -> str:
    return f"/p/alpha/orders/{order.pk}/"


def actions_since(first_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(id__gt=first_id)
        .exclude(action__startswith="alert.")  # the alerts' own business
        .order_by("id")
        .values_list("action", flat=True)
    )


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return order


def test_an_order_card_past_the_quota_is_not_shown(operator, owner, mine, phone: Phone):
    limit_member(operator, QuotaKind.CARD_OPEN, 2, owner)
    client = login(operator)
    assert [client.get(card(mine)).status_code for _ in range(2)] == [200, 200]
    before = last_event_id()
    response = client.get(card(mine))
    assert response.status_code == 429
    page = response.content.decode()
    assert "You reached a quota: Order cards opened per hour, at most 2." in page
    assert "The quota resets at" in page
    assert 0 < int(response["Retry-After"]) <= 3600
    assert mine.customer_name not in page
    assert_no_digits(page, phone[1])
    assert actions_since(before) == ["quota.refused"]  # no order.view: nothing was read


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("comments/", {"text": ""}),  # an empty comment: the card again with its error
        ("details/", {"customer_name": "Someone", "address": "x", "version": "999"}),
    ],
)
def test_a_rejected_post_past_the_card_quota_shows_no_card(
    operator, owner, mine, phone: Phone, path: str, data: dict[str, str]
):
    limit_member(operator, QuotaKind.CARD_OPEN, 1, owner)
    client = login(operator)
    assert client.get(card(mine)).status_code == 200
    before = last_event_id()
    response = client.post(card(mine) + path, data)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Order cards opened per hour" in page
    assert mine.customer_name not in page
    assert mine.address not in page
    assert_no_digits(page, phone[1])
    assert actions_since(before) == ["quota.refused"]  # no order.view: nothing was read


def test_a_rejected_post_within_the_card_quota_shows_the_card_and_counts(operator, owner, mine):
    limit_member(operator, QuotaKind.CARD_OPEN, 2, owner)
    client = login(operator)
    response = client.post(card(mine) + "comments/", {"text": ""})
    assert response.status_code == 200
    assert mine.customer_name in response.content.decode()
    assert client.get(card(mine)).status_code == 200
    assert client.get(card(mine)).status_code == 429  # the rejected POST took one of two


def test_a_reveal_past_the_quota_yields_no_digits(owner, order, phone: Phone):
    do_set_quota(owner.project, QuotaKind.REVEAL, 1, role=Role.OWNER, acting=owner)
    client = login(owner, fresh=True)
    reveal = f"/p/alpha/orders/{order.pk}/reveal/"
    assert phone[1] in client.post(reveal, {"purpose": "confirm"}).content.decode()
    before = last_event_id()
    response = client.post(reveal, {"purpose": "confirm"})
    assert response.status_code == 429
    assert "Numbers revealed per day" in response.content.decode()
    assert_no_digits(response.content.decode(), phone[1])
    assert actions_since(before) == ["quota.refused"]


def test_a_reveal_without_a_purpose_is_not_counted(owner, order, phone: Phone):
    do_set_quota(owner.project, QuotaKind.REVEAL, 1, role=Role.OWNER, acting=owner)
    client = login(owner, fresh=True)
    reveal = f"/p/alpha/orders/{order.pk}/reveal/"
    client.post(reveal, {"purpose": " "})
    assert phone[1] in client.post(reveal, {"purpose": "confirm"}).content.decode()


def test_a_search_past_the_quota_is_not_run(supervisor, owner, order):
    limit_member(supervisor, QuotaKind.SEARCH, 1, owner)
    client = login(supervisor)
    assert client.post("/p/alpha/orders/", {"q": str(order.number)}).status_code == 200
    before = last_event_id()
    response = client.post("/p/alpha/orders/", {"q": str(order.number)})
    assert response.status_code == 429
    assert "Searches per hour" in response.content.decode()
    assert actions_since(before) == ["quota.refused"]  # no order.search


def test_a_call_past_the_quota_answers_htmx_with_a_fragment(operator, owner, mine):
    limit_member(operator, QuotaKind.CALL, 1, owner)
    client = login(operator)
    call = f"/p/alpha/orders/{mine.pk}/call/"
    htmx = {"HX-Request": "true"}
    assert client.post(call, headers=htmx).status_code == 200
    response = client.post(call, headers=htmx)
    assert response.status_code == 429
    fragment = response.content.decode().strip()
    assert fragment.startswith('<span class="notice quota-reached" role="alert">')
    assert "Quota reached: Calls per hour, at most 1. Nothing was done." in fragment
    assert "<html" not in fragment
    assert response["Retry-After"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/audit/events",
        "/api/v1/audit/orders/{id}/history",
    ],
)
def test_api_reads_past_the_keys_quota_answer_429_json(project: Project, owner, order, path):
    key, secret = do_create_api_key(project, "Partner", can_read_orders=True, can_read_audit=True)
    do_set_quota(project, QuotaKind.API_READ, 2, api_key=key, acting=owner)
    client = HttpsClient()
    url = path.format(id=order.pk)
    assert [client.get(url, HTTP_X_API_KEY=secret).status_code for _ in range(2)] == [200, 200]
    before = last_event_id()
    response = client.get(url, HTTP_X_API_KEY=secret)
    assert response.status_code == 429
    body = response.json()
    assert body["quota"] == "api_read"
    assert body["limit"] == 2
    assert 0 < body["retry_after"] <= 60
    assert response["Retry-After"] == str(body["retry_after"])
    assert "items" not in body
    assert actions_since(before) == ["quota.refused"]  # no audit.view / audit.search


def test_other_keys_keep_reading_when_one_is_stopped(project: Project, owner, order):
    stopped, secret = do_create_api_key(project, "Stopped", can_read_orders=True)
    _, other = do_create_api_key(project, "Other", can_read_orders=True)
    do_set_quota(project, QuotaKind.API_READ, 1, api_key=stopped, acting=owner)
    client = HttpsClient()
    client.get("/api/v1/orders", HTTP_X_API_KEY=secret)
    assert client.get("/api/v1/orders", HTTP_X_API_KEY=secret).status_code == 429
    assert client.get("/api/v1/orders", HTTP_X_API_KEY=other).status_code == 200


def test_a_page_of_orders_counts_one_read_per_order(project: Project, owner, order, rng):
    for _ in range(2):
        do_create_order(project, Lead(phone=fake_phone(rng, style=1)[0], name="Anna"))
    key, secret = do_create_api_key(project, "Partner", can_read_orders=True)
    do_set_quota(project, QuotaKind.API_READ, 4, api_key=key, acting=owner)
    client = HttpsClient()
    first = client.get("/api/v1/orders", HTTP_X_API_KEY=secret)
    assert first.status_code == 200
    assert len(first.json()["items"]) == 3  # three reads of four
    response = client.get("/api/v1/orders", HTTP_X_API_KEY=secret)  # three more: refused
    assert response.status_code == 429
    assert "items" not in response.json()
    refused = AuditEvent.objects.get(action="quota.refused")
    assert refused.extra["count"] == 6


def test_a_status_change_answers_with_the_order_only_within_the_read_quota(
    project: Project, owner, order
):
    key, secret = do_create_api_key(
        project, "Delivery", can_read_orders=True, can_update_orders=True
    )
    do_set_quota(project, QuotaKind.API_READ, 1, api_key=key, acting=owner)
    client = HttpsClient()

    def post(code: str) -> Any:
        body = {"status": code}
        return client.post(
            f"/api/v1/orders/{order.pk}/status",
            body,
            content_type="application/json",
            HTTP_X_API_KEY=secret,
        )

    assert post("accepted").json()["customer_name"] == order.customer_name
    response = post("new")  # the change is made, the read is past the quota
    assert response.status_code == 204
    assert response.content == b""
    assert Order.objects.select_related("status").get(pk=order.pk).status.code == "new"
    assert AuditEvent.objects.filter(action="quota.refused").count() == 1
