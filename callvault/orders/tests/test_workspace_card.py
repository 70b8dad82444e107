"""The order card as a workspace: what it shows, what it never shows, and what it costs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.audit.recorder import record_event
from callvault.orders.actions import do_add_item, do_assign_order, do_create_product
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order, Status, WorkSettings
from callvault.orders.tests.support import assert_no_digits, event_text
from callvault.orders.tests.workspace_support import card_url, login, url

Phone = tuple[str, str]


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return Order.objects.get(pk=order.pk)


def test_it_shows_the_customer_the_items_and_the_total(operator: Membership, mine: Order) -> None:
    do_add_item(mine, mine.project.products.get(sku="GIFT"), 1, is_upsell=True)
    response = login(operator).get(card_url(mine))
    page = response.content.decode()
    assert "Ivan Petrov" in page and "Moscow" in page
    assert mine.phone_masked() in page
    assert [(i.product.sku, i.quantity) for i in response.context["items"]] == [
        ("TEA", 2),
        ("GIFT", 1),
    ]
    assert str(response.context["total"]) == "2370.00"  # 2 x 990 + 390
    assert "2370.00" in page


def test_it_offers_upsell_products_first_and_only_this_projects_active_ones(
    operator: Membership, mine: Order, other_project: Project
) -> None:
    do_create_product(mine.project, sku="ZEN", name="Aaa zen honey", price="10", is_upsell=True)
    retired = do_create_product(mine.project, sku="OLD", name="Old tea", price="1")
    type(retired).objects.filter(pk=retired.pk).update(is_active=False)
    form = login(operator).get(card_url(mine)).context["add_item_form"]
    offered = [p.sku for p in form.fields["product"].queryset]
    assert offered == ["ZEN", "GIFT", "TEA"]  # upsells by name, then the rest


def test_it_offers_only_this_projects_active_statuses(
    operator: Membership, mine: Order, other_project: Project
) -> None:
    Status.objects.filter(project=mine.project, code="returned").update(is_active=False)
    form = login(operator).get(card_url(mine)).context["status_form"]
    codes = {s.code for s in form.fields["status"].queryset}
    assert "accepted" in codes and "returned" not in codes
    assert {s.project_id for s in form.fields["status"].queryset} == {mine.project_id}


def test_it_shows_the_sales_script_as_plain_text_with_line_breaks(
    operator: Membership, mine: Order
) -> None:
    WorkSettings.objects.filter(project=mine.project).update(
        script="Hello, <b>dear</b> customer!\nOffer the gift box.<script>alert(1)</script>"
    )
    page = login(operator).get(card_url(mine)).content.decode()
    assert "Hello, &lt;b&gt;dear&lt;/b&gt; customer!<br>Offer the gift box." in page
    assert "<script>alert(1)</script>" not in page
    assert "<b>dear</b>" not in page


def test_it_shows_the_next_call_on_both_clocks(operator: Membership, mine: Order) -> None:
    Order.objects.filter(pk=mine.pk).update(
        customer_tz="Asia/Vladivostok", next_call_at=datetime(2030, 5, 1, 7, 0, tzinfo=UTC)
    )
    page = login(operator).get(card_url(mine)).content.decode()
    assert "05/01/2030 5 p.m." in page  # the customer's clock
    assert "05/01/2030 10 a.m." in page  # the operator's (the project's Moscow)
    assert "Asia/Vladivostok" in page


def test_opening_the_card_is_recorded_and_so_is_a_card_shown_after_a_refused_save(
    operator: Membership, mine: Order
) -> None:
    client = login(operator)
    client.get(card_url(mine))
    assert AuditEvent.objects.filter(action="order.view").count() == 1
    # A refused save shows the card again: that is a read too, not a way around the record.
    response = client.post(url("comment", mine.pk), {"text": "  "})
    assert response.status_code == 200
    assert AuditEvent.objects.filter(action="order.view").count() == 2


def test_the_card_costs_the_same_queries_with_one_item_or_ten(
    supervisor: Membership, mine: Order
) -> None:
    client = login(supervisor)  # a supervisor also loads the history
    tea = mine.project.products.get(sku="TEA")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(card_url(mine)).status_code == 200
        return len(captured)

    # The first page after logging in also records the session's bookkeeping (last seen,
    # the second-factor check): measure pages two and three, as an operator's day is.
    queries()
    one = queries()
    for _ in range(9):
        do_add_item(mine, tea, 1)
    assert mine.items.count() == 10
    assert queries() == one


@pytest.mark.parametrize("role", ["operator"])
def test_no_card_shows_the_digits_even_typed_into_the_name_and_address(
    role: str, request: pytest.FixtureRequest, project: Project, phone: Phone
) -> None:
    member: Membership = request.getfixturevalue(role)
    lead = Lead(phone=phone[0], name=f"Ivan {phone[0]}", address=f"Call {phone[0]} at the gate")
    order = do_create_order(project, lead).order
    do_assign_order(order, member.user)
    page = login(member).get(card_url(order)).content.decode()
    assert "Ivan [redacted]" in page  # the edit form's field too
    assert_no_digits(page, phone[1])


def test_a_supervisor_reads_the_history_without_digits_typed_into_the_name(
    supervisor: Membership, project: Project, phone: Phone
) -> None:
    order = do_create_order(project, Lead(phone=phone[0], name=f"Ivan {phone[0]}")).order
    page = login(supervisor).get(card_url(order)).content.decode()
    assert "order.create" in page and "Ivan [redacted]" in page
    assert_no_digits(page, phone[1])
    # The record itself keeps the name without the digits.
    assert_no_digits(event_text(AuditEvent.objects.get(action="order.create")), phone[1])


def test_history_recorded_before_redaction_is_shown_without_digits(
    supervisor: Membership, order: Order, phone: Phone
) -> None:
    # Events written before free text was redacted at write time still hold the digits.
    record_event(
        "order.update",
        project_id=order.project_id,
        object_type="order",
        object_id=order.pk,
        changes={"customer_name": ["Ivan", f"Ivan {phone[0]}"], "attempts": [0, 1]},
    )
    page = login(supervisor).get(card_url(order)).content.decode()
    assert "Ivan → Ivan [redacted]" in page
    assert "0 → 1" in page
    assert_no_digits(page, phone[1])
