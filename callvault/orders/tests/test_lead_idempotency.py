"""Idempotency-Key on POST /api/v1/leads: a retry returns the first order, never a copy."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from callvault.accounts.models import Project
from callvault.orders.models import IdempotencyRecord, Order
from callvault.orders.tests.support import HttpsClient, make_key, post_lead, row_counts

Phone = tuple[str, str]


def test_it_answers_a_retry_with_the_first_order(api_key: str, phone: Phone) -> None:
    body = {"phone": phone[0], "items": [{"sku": "TEA", "quantity": 2}]}
    first = post_lead(HttpsClient(), api_key, body, HTTP_IDEMPOTENCY_KEY="lead-42")
    retry = post_lead(HttpsClient(), api_key, body, HTTP_IDEMPOTENCY_KEY="lead-42")
    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert Order.objects.count() == 1
    assert IdempotencyRecord.objects.get().order_id == first.json()["id"]


def test_it_refuses_the_same_key_for_a_different_lead(api_key: str, phone: Phone) -> None:
    first = post_lead(HttpsClient(), api_key, {"phone": phone[0]}, HTTP_IDEMPOTENCY_KEY="lead-42")
    assert first.status_code == 201
    before = row_counts()
    other = {"phone": phone[0], "name": "Someone else"}
    response = post_lead(HttpsClient(), api_key, other, HTTP_IDEMPOTENCY_KEY="lead-42")
    assert response.status_code == 409
    assert response.json()["detail"]
    assert row_counts() == before


def test_projects_use_the_same_key_independently(
    project: Project, other_project: Project, api_key: str, phone: Phone
) -> None:
    body = {"phone": phone[0]}
    mine = post_lead(HttpsClient(), api_key, body, HTTP_IDEMPOTENCY_KEY="lead-42")
    theirs = post_lead(HttpsClient(), make_key(other_project), body, HTTP_IDEMPOTENCY_KEY="lead-42")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert Order.objects.get(pk=mine.json()["id"]).project == project
    assert Order.objects.get(pk=theirs.json()["id"]).project == other_project


def test_without_a_key_a_resent_lead_is_a_new_order(api_key: str, phone: Phone) -> None:
    first = post_lead(HttpsClient(), api_key, {"phone": phone[0]})
    second = post_lead(HttpsClient(), api_key, {"phone": phone[0]})
    assert first.status_code == second.status_code == 201
    assert Order.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


def test_it_rejects_an_oversize_idempotency_key(api_key: str, phone: Phone) -> None:
    before = row_counts()
    response = post_lead(
        HttpsClient(), api_key, {"phone": phone[0]}, HTTP_IDEMPOTENCY_KEY="k" * 201
    )
    assert response.status_code == 422
    assert ["body", "Idempotency-Key"] in [d["loc"] for d in response.json()["detail"]]
    assert row_counts() == before


THREADS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_exactly_one_order(api_key: str, phone: Phone) -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
        # Django's in-memory test database is shared-cache SQLite: a locked table answers
        # SQLITE_LOCKED at once, which the busy timeout does not cover. The product's file
        # database (WAL, BEGIN IMMEDIATE, 20 s timeout) passes this test: run it with
        # DATABASES["default"]["TEST"]["NAME"] set to a file.
        pytest.skip("in-memory shared-cache SQLite cannot wait for locks")
    body = {"phone": phone[0], "items": [{"sku": "TEA"}]}
    barrier = threading.Barrier(THREADS)
    answers: list[tuple[int, int]] = []
    failures: list[BaseException] = []

    def post() -> None:
        try:
            client = HttpsClient()
            barrier.wait(timeout=10)
            response = post_lead(client, api_key, body, HTTP_IDEMPOTENCY_KEY="same-lead")
            answers.append((response.status_code, response.json()["id"]))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(answers) == THREADS
    assert sorted(status for status, _ in answers) == [200] * (THREADS - 1) + [201]
    assert len({order_id for _, order_id in answers}) == 1
    assert Order.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_the_stored_fingerprint_is_keyed_so_the_number_cannot_be_guessed_from_it(
    phone: Phone,
) -> None:
    import hashlib
    import json

    from callvault.orders.intake import Lead

    lead = Lead(phone=phone[0])
    plain = hashlib.sha256(
        json.dumps(lead.__dict__, default=lambda o: o.__dict__, sort_keys=True).encode()
    ).hexdigest()
    assert lead.fingerprint() != plain
    assert lead.fingerprint() == Lead(phone=phone[0]).fingerprint()
    assert lead.fingerprint() != Lead(phone=phone[1]).fingerprint()
