"""Comments from the card: POST /p/<slug>/orders/<id>/comments/."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Membership
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.orders.tests.support import assert_no_digits, event_text
from callvault.orders.tests.workspace_support import card_url, fingerprint, login, url

Phone = tuple[str, str]


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return order


def test_an_operator_adds_a_comment_and_it_is_recorded(operator: Membership, mine: Order) -> None:
    response = login(operator).post(url("comment", mine.pk), {"text": "  call after six  "})
    assert response.status_code == 302
    assert response["Location"] == card_url(mine) + "#comments"
    comment = mine.comments.get()
    assert (comment.text, comment.author, comment.author_name) == (
        "call after six",
        operator.user,
        "bob",
    )
    event = AuditEvent.objects.get(action="order.comment")
    assert event.changes == {f"comment {comment.pk}": [None, "call after six"]}


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001])
def test_an_empty_or_huge_comment_is_refused_naming_the_field(
    operator: Membership, mine: Order, text: str
) -> None:
    before = fingerprint(mine)
    response = login(operator).post(url("comment", mine.pk), {"text": text})
    assert response.status_code == 200
    assert "text" in response.context["comment_form"].errors
    assert "Comment: " in response.content.decode()
    assert fingerprint(mine) == before


def test_a_number_quoted_in_a_comment_stays_off_the_page_and_out_of_the_record(
    operator: Membership, mine: Order, phone: Phone
) -> None:
    client = login(operator)
    client.post(url("comment", mine.pk), {"text": f"her second phone is {phone[0]}"})
    assert_no_digits(client.get(card_url(mine)).content.decode(), phone[1])
    assert_no_digits(event_text(AuditEvent.objects.get(action="order.comment")), phone[1])
