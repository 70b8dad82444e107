"""GET /api/v1/orders and /api/v1/orders/{id}: the key's project only, phones masked."""

from __future__ import annotations

import random
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from callvault.accounts.actions import do_revoke_api_key
from callvault.accounts.models import ApiKey, Project
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.actions import do_change_status
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import (
    ORDERS_URL,
    HttpsClient,
    assert_masked,
    assert_no_digits,
    get_api,
    make_key,
    reveal_e164,
)

Phone = tuple[str, str]


def make_orders(project: Project, count: int, rng: random.Random, **fields: Any) -> list[Order]:
    """Orders with two items each, oldest first."""
    return [
        do_create_order(
            project,
            Lead(phone=typed, items=[LeadItem("TEA", 2), LeadItem("GIFT", 1)], **fields),
        ).order
        for typed in fake_phone_numbers(count, rng)
    ]


def test_it_refuses_a_request_without_a_key(order: Order) -> None:
    assert HttpsClient().get(ORDERS_URL).status_code == 401
    assert HttpsClient().get(f"{ORDERS_URL}/{order.pk}").status_code == 401


def test_it_refuses_a_revoked_key(project: Project, api_key: str, order: Order) -> None:
    do_revoke_api_key(ApiKey.objects.get(project=project, name="Landing"))
    assert get_api(HttpsClient(), api_key, ORDERS_URL).status_code == 401
    assert get_api(HttpsClient(), api_key, f"{ORDERS_URL}/{order.pk}").status_code == 401


def test_it_forbids_a_key_that_may_not_read(project: Project, order: Order) -> None:
    key = make_key(project, can_update_orders=True)
    assert get_api(HttpsClient(), key, ORDERS_URL).status_code == 403
    assert get_api(HttpsClient(), key, f"{ORDERS_URL}/{order.pk}").status_code == 403


def test_it_lists_only_the_keys_project(
    project: Project, other_project: Project, api_key: str, rng: random.Random
) -> None:
    mine = make_orders(project, 2, rng)
    make_orders(other_project, 2, rng)
    response = get_api(HttpsClient(), api_key, ORDERS_URL)
    assert response.status_code == 200
    assert [o["id"] for o in response.json()["items"]] == [o.pk for o in reversed(mine)]


def test_it_hides_another_projects_order(
    other_project: Project, api_key: str, rng: random.Random
) -> None:
    (theirs,) = make_orders(other_project, 1, rng)
    response = get_api(HttpsClient(), api_key, f"{ORDERS_URL}/{theirs.pk}")
    assert response.status_code == 404
    assert get_api(HttpsClient(), api_key, f"{ORDERS_URL}/{theirs.pk + 1000}").status_code == 404


def test_it_shows_one_order(api_key: str, order: Order, phone: Phone) -> None:
    response = get_api(HttpsClient(), api_key, f"{ORDERS_URL}/{order.pk}")
    assert response.status_code == 200
    data = response.json()
    assert (data["id"], data["number"], data["status"]) == (order.pk, order.number, "new")
    assert data["status_group"] == "processing"
    assert data["customer_name"] == "Ivan Petrov"
    assert data["items"] == [
        {"sku": "TEA", "name": "Tea", "quantity": 2, "price": "990.00", "is_upsell": False}
    ]
    assert data["total"] == "1980.00"
    assert_masked(data["phone_masked"], phone[1])
    assert_no_digits(response.content.decode(), phone[1])


def test_it_shows_only_masked_phones_in_the_list(
    project: Project, api_key: str, rng: random.Random
) -> None:
    orders = make_orders(project, 5, rng)
    response = get_api(HttpsClient(), api_key, ORDERS_URL)
    assert len(response.json()["items"]) == 5
    assert_no_digits(response.content.decode(), *(reveal_e164(o) for o in orders))


def test_it_pages_by_id(project: Project, api_key: str, rng: random.Random) -> None:
    orders = make_orders(project, 5, rng)
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        data = get_api(HttpsClient(), api_key, ORDERS_URL, **params).json()
        pages += 1
        seen += [o["id"] for o in data["items"]]
        if data["next_after"] is None:
            break
        assert data["next_after"] == seen[-1]
        params["before"] = data["next_after"]
    assert pages == 3
    assert seen == [o.pk for o in reversed(orders)]


def test_it_filters_by_status(project: Project, api_key: str, rng: random.Random) -> None:
    first, second, third = make_orders(project, 3, rng)
    do_change_status(second, Status.objects.get(project=project, code="accepted"))
    accepted = get_api(HttpsClient(), api_key, ORDERS_URL, status="accepted").json()["items"]
    assert [o["id"] for o in accepted] == [second.pk]
    new = get_api(HttpsClient(), api_key, ORDERS_URL, status="new").json()["items"]
    assert [o["id"] for o in new] == [third.pk, first.pk]


def test_it_filters_by_partner_ref(project: Project, api_key: str, rng: random.Random) -> None:
    make_orders(project, 2, rng, partner_ref="cpa-1")
    (wanted,) = make_orders(project, 1, rng, partner_ref="cpa-2")
    items = get_api(HttpsClient(), api_key, ORDERS_URL, partner_ref="cpa-2").json()["items"]
    assert [o["id"] for o in items] == [wanted.pk]


def test_the_list_does_not_grow_queries_with_rows(
    project: Project,
    api_key: str,
    rng: random.Random,
    django_assert_max_num_queries: Any,
) -> None:
    make_orders(project, 5, rng)
    client = HttpsClient()
    get_api(client, api_key, ORDERS_URL)  # the key's "last used" is written once a minute
    with CaptureQueriesContext(connection) as baseline:
        get_api(client, api_key, ORDERS_URL)
    make_orders(project, 35, rng)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        response = get_api(client, api_key, ORDERS_URL)
    assert len(response.json()["items"]) == 40
    assert all(len(o["items"]) == 2 for o in response.json()["items"])
