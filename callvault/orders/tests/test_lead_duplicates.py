"""Duplicate leads: the same number in any writing, within the project's window, in one project."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from callvault.accounts.models import Project
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, make_key, post_lead, styles_of

Phone = tuple[str, str]


def test_the_same_number_in_every_style_is_a_duplicate_of_the_first(
    api_key: str, phone: Phone
) -> None:
    ids = []
    for typed in styles_of(phone[1]):
        response = post_lead(HttpsClient(), api_key, {"phone": typed})
        assert response.status_code == 201
        ids.append(response.json()["id"])
    first, *later = Order.objects.filter(pk__in=ids).order_by("pk")
    assert first.duplicate_of is None
    # Duplicates of duplicates point at the first order, so a chain groups together.
    assert [o.duplicate_of_id for o in later] == [first.pk] * len(later)
    assert {o.phone_index for o in later} == {first.phone_index}


def test_the_answer_names_the_original(api_key: str, phone: Phone) -> None:
    first = post_lead(HttpsClient(), api_key, {"phone": phone[0]}).json()
    second = post_lead(HttpsClient(), api_key, {"phone": styles_of(phone[1])[3]}).json()
    assert second["duplicate_of"] == first["id"]


def test_another_number_is_not_a_duplicate(project: Project, phone: Phone) -> None:
    do_create_order(project, Lead(phone=phone[0]))
    area, line = phone[1][2:5], int(phone[1][-3:])
    other = f"+1 {area} 555 0{100 + (line - 99) % 100}"
    assert do_create_order(project, Lead(phone=other)).order.duplicate_of is None


@pytest.mark.parametrize(("hours_back", "is_duplicate"), [(-1, True), (1, False)])
def test_only_orders_within_the_window_count(
    project: Project, phone: Phone, hours_back: int, is_duplicate: bool
) -> None:
    window = project.duplicate_window_hours
    first = do_create_order(project, Lead(phone=phone[0])).order
    Order.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - timedelta(hours=window + hours_back)
    )
    later = do_create_order(project, Lead(phone=styles_of(phone[1])[2])).order
    assert (later.duplicate_of_id == first.pk) is is_duplicate
    if not is_duplicate:
        assert later.duplicate_of is None


def test_the_same_number_in_another_project_is_not_a_duplicate(
    project: Project, other_project: Project, phone: Phone
) -> None:
    mine = post_lead(HttpsClient(), make_key(project), {"phone": phone[0]}).json()
    theirs = post_lead(HttpsClient(), make_key(other_project), {"phone": phone[0]}).json()
    assert theirs["duplicate_of"] is None
    # The blind index is keyed per project: the same number does not match across projects.
    assert (
        Order.objects.get(pk=mine["id"]).phone_index
        != Order.objects.get(pk=theirs["id"]).phone_index
    )
