"""POST /api/v1/leads/form: a landing page's plain HTML form, with the key as a field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from callvault.accounts.actions import do_revoke_api_key, do_update_project
from callvault.accounts.models import ApiKey, Project
from callvault.orders.models import Order
from callvault.orders.tests.support import (
    FORM_URL,
    HttpsClient,
    assert_masked,
    assert_no_digits,
    make_key,
    row_counts,
)

if TYPE_CHECKING:
    from callvault.orders.tests.support import Response

Phone = tuple[str, str]
THANKS = "https://shop.example/thanks"


def post_form(data: dict[str, Any]) -> Response:
    return HttpsClient().post(FORM_URL, data)


def assert_page(response: Response, status: int) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_it_redirects_to_the_thank_you_page(project: Project, api_key: str, phone: Phone) -> None:
    do_update_project(project, thank_you_url=THANKS)
    response = post_form({"api_key": api_key, "phone": phone[0], "name": "Ivan"})
    assert response.status_code == 303
    assert response["Location"] == THANKS
    order = Order.objects.get()
    assert (order.project, order.customer_name) == (project, "Ivan")


def test_it_answers_json_without_a_thank_you_page(
    project: Project, api_key: str, phone: Phone
) -> None:
    response = post_form({"api_key": api_key, "phone": phone[0]})
    assert response.status_code == 201
    data = response.json()
    assert Order.objects.get().pk == data["id"]
    assert data["status"] == "new"
    assert_masked(data["phone_masked"], phone[1])
    assert_no_digits(response.content.decode(), phone[1])


def test_it_takes_one_sku_with_a_quantity(api_key: str, phone: Phone) -> None:
    response = post_form({"api_key": api_key, "phone": phone[0], "sku": "GIFT", "quantity": "3"})
    assert response.status_code == 201
    order = Order.objects.get()
    assert [(i.product.sku, i.quantity) for i in order.items.all()] == [("GIFT", 3)]


def test_it_takes_a_lead_without_items(api_key: str, phone: Phone) -> None:
    response = post_form({"api_key": api_key, "phone": phone[0]})
    assert response.status_code == 201
    assert not Order.objects.get().items.exists()


def test_it_takes_the_key_from_the_header_too(api_key: str, phone: Phone) -> None:
    response = HttpsClient().post(FORM_URL, {"phone": phone[0]}, HTTP_X_API_KEY=api_key)
    assert response.status_code == 201


def test_it_replays_a_form_sent_twice_with_one_idempotency_key(api_key: str, phone: Phone) -> None:
    data = {"api_key": api_key, "phone": phone[0], "idempotency_key": "form-7"}
    assert post_form(data).status_code == 201
    assert post_form(data).status_code == 200
    assert Order.objects.count() == 1


BAD_FORMS: dict[str, tuple[dict[str, str], list[str]]] = {
    "unparsable phone": ({"phone": "call me"}, ["phone"]),
    "missing phone": ({"phone": ""}, ["phone"]),
    "unknown SKU": ({"sku": "NOPE"}, ["items.0.sku"]),
    "quantity 0": ({"sku": "TEA", "quantity": "0"}, ["quantity"]),
    "oversize name": ({"name": "x" * 201}, ["name"]),
    "two bad fields": ({"phone": "call me", "sku": "NOPE"}, ["phone", "items.0.sku"]),
}


@pytest.mark.parametrize("case", BAD_FORMS)
def test_it_shows_an_error_page_naming_the_fields(case: str, api_key: str, phone: Phone) -> None:
    changes, fields = BAD_FORMS[case]
    before = row_counts()
    response = post_form({"api_key": api_key, "phone": phone[0], **changes})
    page = assert_page(response, 422)
    for name in fields:
        assert f"<b>{name}</b>" in page
    assert row_counts() == before
    assert_no_digits(page, phone[1])
    assert api_key not in page


def _wrong(project: Project, api_key: str) -> str:
    return api_key[:-6] + ("xxxxxx" if not api_key.endswith("xxxxxx") else "yyyyyy")


def _revoked(project: Project, api_key: str) -> str:
    do_revoke_api_key(ApiKey.objects.get(project=project, name="Landing"))
    return api_key


def _missing(project: Project, api_key: str) -> str:
    return ""


@pytest.mark.parametrize("make_secret", [_wrong, _revoked, _missing])
def test_it_shows_a_401_page_for_a_bad_key(
    make_secret: Any, project: Project, api_key: str, phone: Phone
) -> None:
    secret = make_secret(project, api_key)
    before = row_counts()
    page = assert_page(post_form({"api_key": secret, "phone": phone[0]}), 401)
    assert "<b>api_key</b>" in page
    assert row_counts() == before
    if secret:
        assert secret not in page


def test_it_shows_a_403_page_for_a_key_that_may_not_post_leads(
    project: Project, phone: Phone
) -> None:
    key = make_key(project, can_create_leads=False)
    before = row_counts()
    assert_page(post_form({"api_key": key, "phone": phone[0]}), 403)
    assert row_counts() == before


def test_it_names_the_idempotency_key_when_it_was_used_for_another_lead(
    api_key: str, phone: Phone
) -> None:
    first = {"api_key": api_key, "phone": phone[0], "idempotency_key": "k-1"}
    assert post_form(first).status_code == 201
    page = assert_page(post_form({**first, "name": "Someone else"}), 409)
    assert "idempotency_key" in page
    assert Order.objects.count() == 1
