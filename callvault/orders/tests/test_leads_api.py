"""POST /api/v1/leads: a lead becomes an order with its phone sealed, or nothing is written."""

from __future__ import annotations

import random
from typing import Any

import pytest

from callvault.accounts.actions import do_revoke_api_key, do_update_project
from callvault.accounts.models import ApiKey, Project
from callvault.audit.models import ActorKind, AuditEvent
from callvault.orders.models import Order, OrderItem
from callvault.orders.tests.support import (
    LEADS_URL,
    HttpsClient,
    assert_masked,
    assert_no_digits,
    event_text,
    make_key,
    post_lead,
    row_counts,
)
from callvault.vault.phones import blind_index, open_phone

Phone = tuple[str, str]


def test_it_creates_an_order_from_a_lead(project: Project, api_key: str, phone: Phone) -> None:
    body = {"phone": phone[0], "name": "Ivan", "items": [{"sku": "TEA", "quantity": 2}]}
    response = post_lead(HttpsClient(), api_key, body)
    assert response.status_code == 201
    data = response.json()
    order = Order.objects.get(pk=data["id"])
    assert order.project == project
    assert data["number"] == order.number == 1
    assert data["status"] == "new"
    assert data["duplicate_of"] is None
    assert order.customer_name == "Ivan"
    assert [(i.product.sku, i.quantity) for i in order.items.all()] == [("TEA", 2)]


def test_it_answers_with_the_phone_masked_only(api_key: str, phone: Phone) -> None:
    response = post_lead(HttpsClient(), api_key, {"phone": phone[0]})
    assert response.status_code == 201
    assert_masked(response.json()["phone_masked"], phone[1], visible=2)
    assert_no_digits(response.content.decode(), phone[1])


def test_it_masks_as_the_project_says(project: Project, api_key: str, phone: Phone) -> None:
    do_update_project(project, mask_visible_digits=0)
    response = post_lead(HttpsClient(), api_key, {"phone": phone[0]})
    assert_masked(response.json()["phone_masked"], phone[1], visible=0)


def test_it_stores_the_phone_sealed_and_indexed(
    project: Project, api_key: str, phone: Phone
) -> None:
    response = post_lead(HttpsClient(), api_key, {"phone": phone[0]})
    order = Order.objects.get(pk=response.json()["id"])
    assert order.phone_sealed.startswith("cv1:")
    assert_no_digits(order.phone_sealed, phone[1])
    assert order.phone_index == blind_index(phone[1], project_id=project.pk)
    assert_no_digits(order.phone_index, phone[1])
    # The ciphertext is this number's, bound to this project.
    assert open_phone(order.phone_sealed, project_id=project.pk, field="phone") == phone[1]


def test_it_accepts_a_bearer_token(api_key: str, phone: Phone) -> None:
    response = HttpsClient().post(
        LEADS_URL,
        {"phone": phone[0]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 201


def test_it_files_the_lead_under_the_keys_project(
    project: Project, other_project: Project, phone: Phone
) -> None:
    response = post_lead(HttpsClient(), make_key(other_project), {"phone": phone[0]})
    assert response.status_code == 201
    assert Order.objects.get(pk=response.json()["id"]).project == other_project
    assert not Order.objects.filter(project=project).exists()


def test_it_records_the_order_as_done_by_the_key(api_key: str, phone: Phone) -> None:
    response = post_lead(HttpsClient(), api_key, {"phone": phone[0], "items": [{"sku": "TEA"}]})
    event = AuditEvent.objects.get(action="order.create", object_id=str(response.json()["id"]))
    assert event.actor_kind == ActorKind.API_KEY
    assert event.changes["phone"] == "changed"
    assert event.extra["items"] == ["1 x TEA"]
    assert_no_digits(event_text(event), phone[1])


def _invalid_number(rng: random.Random) -> str:
    # Area code 999 is not assigned: the number parses but is not valid.
    return f"+1 999 555 0{rng.choice(range(100, 200))}"


BAD_LEADS: dict[str, tuple[Any, list[str]]] = {
    "missing phone": (lambda p: {"name": "Ivan"}, ["body", "phone"]),
    "unparsable phone": (lambda p: {"phone": "call me maybe"}, ["body", "phone"]),
    "invalid number": (lambda p: {"phone": p}, ["body", "phone"]),
    "unknown SKU": (
        lambda p: {"phone": p, "items": [{"sku": "NOPE"}]},
        ["body", "items", "0", "sku"],
    ),
    "quantity 0": (
        lambda p: {"phone": p, "items": [{"sku": "TEA", "quantity": 0}]},
        ["body", "items", "0", "quantity"],
    ),
    "oversize name": (lambda p: {"phone": p, "name": "x" * 201}, ["body", "name"]),
    "too many items": (lambda p: {"phone": p, "items": [{"sku": "TEA"}] * 51}, ["body", "items"]),
}


@pytest.mark.parametrize("case", BAD_LEADS)
def test_it_rejects_a_bad_lead_naming_the_field(
    case: str, api_key: str, phone: Phone, rng: random.Random
) -> None:
    make_body, loc = BAD_LEADS[case]
    submitted = _invalid_number(rng) if case == "invalid number" else phone[0]
    before = row_counts()
    response = post_lead(HttpsClient(), api_key, make_body(submitted))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert loc in [d["loc"] for d in detail]
    assert all(d["msg"] for d in detail)
    assert row_counts() == before
    text = response.content.decode()
    assert_no_digits(text, phone[1])
    assert submitted not in text


def test_it_names_every_bad_field_at_once(api_key: str, rng: random.Random) -> None:
    body = {"phone": _invalid_number(rng), "items": [{"sku": "TEA"}, {"sku": "NOPE"}]}
    response = post_lead(HttpsClient(), api_key, body)
    assert response.status_code == 422
    locs = [d["loc"] for d in response.json()["detail"]]
    assert ["body", "phone"] in locs
    assert ["body", "items", "1", "sku"] in locs
    assert ["body", "items", "0", "sku"] not in locs


def test_it_rejects_malformed_json(api_key: str, phone: Phone) -> None:
    before = row_counts()
    response = post_lead(HttpsClient(), api_key, '{"phone": "' + phone[0] + '", ')
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert_no_digits(response.content.decode(), phone[1])
    assert row_counts() == before


def _wrong_secret(project: Project, api_key: str) -> str:
    return api_key[:-6] + ("xxxxxx" if not api_key.endswith("xxxxxx") else "yyyyyy")


def _revoked(project: Project, api_key: str) -> str:
    do_revoke_api_key(ApiKey.objects.get(project=project, name="Landing"))
    return api_key


@pytest.mark.parametrize(
    ("make_secret", "reason"), [(_wrong_secret, "wrong secret"), (_revoked, "revoked")]
)
def test_it_refuses_a_bad_key_and_records_it_without_the_secret(
    make_secret: Any, reason: str, project: Project, api_key: str, phone: Phone
) -> None:
    secret = make_secret(project, api_key)
    before = row_counts()
    response = post_lead(HttpsClient(), secret, {"phone": phone[0]})
    assert response.status_code == 401
    assert row_counts() == before
    event = AuditEvent.objects.get(action="api_key.refused")
    assert event.object_id == str(ApiKey.objects.get(project=project, name="Landing").pk)
    assert event.project_id == project.pk
    assert event.extra["reason"] == reason
    stored = event_text(event)
    assert secret not in stored
    assert secret.split("_", 2)[2] not in stored


def test_it_refuses_a_lead_without_a_key(phone: Phone, project: Project) -> None:
    before = row_counts()
    response = HttpsClient().post(LEADS_URL, {"phone": phone[0]}, content_type="application/json")
    assert response.status_code == 401
    assert row_counts() == before


def test_it_forbids_a_key_that_may_not_post_leads(project: Project, phone: Phone) -> None:
    before = row_counts()
    key = make_key(project, can_create_leads=False, can_read_orders=True)
    response = post_lead(HttpsClient(), key, {"phone": phone[0]})
    assert response.status_code == 403
    assert row_counts() == before


@pytest.mark.parametrize(
    "target", ["record_event", "bulk_create"], ids=["audit write fails", "item insert fails"]
)
def test_a_crash_after_the_insert_leaves_no_partial_order(
    target: str, monkeypatch: pytest.MonkeyPatch, api_key: str, phone: Phone
) -> None:
    calls: list[str] = []

    def crash(*args: Any, **kwargs: Any) -> None:
        calls.append(target)
        raise RuntimeError("the disk is on fire")

    if target == "record_event":
        monkeypatch.setattr("callvault.orders.actions.record_event", crash)
    else:
        monkeypatch.setattr(OrderItem.objects, "bulk_create", crash)
    before = row_counts()
    body = {"phone": phone[0], "comment": "ring after 6", "items": [{"sku": "TEA"}]}
    response = post_lead(
        HttpsClient(raise_request_exception=False), api_key, body, HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert calls == [target]
    assert response.status_code == 500
    assert row_counts() == before
    assert not AuditEvent.objects.filter(action="order.create").exists()
    monkeypatch.undo()
    # The number taken by the failed insert was rolled back with it: no gap.
    retry = post_lead(HttpsClient(), api_key, body, HTTP_IDEMPOTENCY_KEY="k1")
    assert retry.status_code == 201
    assert retry.json()["number"] == 1
