"""Items on the card: add an upsell, change a quantity, remove a line; plain POST or HTMX."""

from __future__ import annotations

from decimal import Decimal

import pytest

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import do_assign_order, do_set_item_quantity
from callvault.orders.models import Order, OrderItem, Product
from callvault.orders.tests.support import assert_no_digits, reveal_e164
from callvault.orders.tests.workspace_support import card_url, fingerprint, login, new_order, url

HTMX = {"HX-Request": "true"}


@pytest.fixture
def mine(operator: Membership, order: Order) -> Order:
    do_assign_order(order, operator.user)
    return Order.objects.get(pk=order.pk)


def gift(order: Order) -> Product:
    return order.project.products.get(sku="GIFT")


def test_an_operator_adds_an_upsell_and_it_is_recorded(operator: Membership, mine: Order) -> None:
    response = login(operator).post(
        url("item_add", mine.pk), {"product": gift(mine).pk, "quantity": 2}
    )
    assert response.status_code == 302
    assert response["Location"] == card_url(mine) + "#items"
    item = mine.items.get(product__sku="GIFT")
    assert (item.quantity, item.price, item.is_upsell) == (2, Decimal("390.00"), True)
    event = AuditEvent.objects.get(action="order.item_add")
    assert (event.object_id, event.actor_id) == (str(mine.pk), str(operator.user_id))
    assert event.changes == {f"item {item.pk}": [None, "2 x GIFT @ 390.00"]}


def test_with_htmx_it_answers_with_the_items_block_alone(operator: Membership, mine: Order) -> None:
    response = login(operator).post(
        url("item_add", mine.pk), {"product": gift(mine).pk, "quantity": 1}, headers=HTMX
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.startswith('<section id="items">') and "<html" not in page
    assert "Gift box" in page and "2370.00" in page  # the new total
    assert_no_digits(page, reveal_e164(mine))


def test_an_operator_changes_a_quantity_and_the_record_has_before_and_after(
    operator: Membership, mine: Order
) -> None:
    item = mine.items.get()
    response = login(operator).post(url("item_quantity", mine.pk, item.pk), {"quantity": 5})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.quantity == 5
    event = AuditEvent.objects.get(action="order.item_change")
    assert event.object_id == str(mine.pk)
    assert event.changes == {f"item {item.pk}": ["2 x TEA @ 990.00", "5 x TEA @ 990.00"]}


@pytest.mark.parametrize("quantity", ["0", "-1", "1001", "two", "", "1.5"])
def test_a_bad_quantity_is_refused_by_name_and_nothing_changes(
    operator: Membership, mine: Order, quantity: str
) -> None:
    item = mine.items.get()
    before = fingerprint(mine)
    client = login(operator)
    response = client.post(url("item_quantity", mine.pk, item.pk), {"quantity": quantity})
    assert response.status_code == 200
    assert "quantity" in response.context["quantity_form"].errors
    assert "Quantity: " in response.content.decode()
    response = client.post(
        url("item_add", mine.pk), {"product": gift(mine).pk, "quantity": quantity}
    )
    assert "quantity" in response.context["add_item_form"].errors
    assert fingerprint(mine) == before


def test_with_htmx_a_refusal_comes_back_in_the_items_block(
    operator: Membership, mine: Order
) -> None:
    item = mine.items.get()
    response = login(operator).post(
        url("item_quantity", mine.pk, item.pk), {"quantity": "0"}, headers=HTMX
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.startswith('<section id="items">')
    assert "Quantity: Ensure this value is greater than or equal to 1." in page
    item.refresh_from_db()
    assert item.quantity == 2


def test_another_projects_product_is_unknown_here(
    operator: Membership, mine: Order, other_project: Project
) -> None:
    before = fingerprint(mine)
    theirs = other_project.products.get(sku="GIFT")
    response = login(operator).post(url("item_add", mine.pk), {"product": theirs.pk, "quantity": 1})
    assert response.status_code == 200
    assert "product" in response.context["add_item_form"].errors
    assert "Product: Select a valid choice." in response.content.decode()
    assert fingerprint(mine) == before


def test_a_retired_product_cannot_be_added(operator: Membership, mine: Order) -> None:
    Product.objects.filter(pk=gift(mine).pk).update(is_active=False)
    before = fingerprint(mine)
    response = login(operator).post(
        url("item_add", mine.pk), {"product": gift(mine).pk, "quantity": 1}
    )
    assert "product" in response.context["add_item_form"].errors
    assert fingerprint(mine) == before


def test_a_line_of_another_order_is_not_found_through_this_one(
    operator: Membership, mine: Order, project: Project, phone: tuple[str, str]
) -> None:
    other = new_order(project, phone[0], name="Not theirs")
    their_item = other.items.get()
    client = login(operator)
    before = fingerprint(other)
    assert (
        client.post(url("item_quantity", mine.pk, their_item.pk), {"quantity": 9}).status_code
        == 404
    )
    assert client.post(url("item_remove", mine.pk, their_item.pk)).status_code == 404
    assert fingerprint(other) == before


def test_an_operator_removes_a_line_and_it_is_recorded(operator: Membership, mine: Order) -> None:
    item = mine.items.get()
    response = login(operator).post(url("item_remove", mine.pk, item.pk))
    assert response.status_code == 302
    assert not mine.items.exists()
    event = AuditEvent.objects.get(action="order.item_remove")
    assert event.changes == {f"item {item.pk}": ["2 x TEA @ 990.00", None]}


def test_item_changes_leave_the_orders_version_alone(operator: Membership, mine: Order) -> None:
    # Decided: the version guards details and status; the card's other forms stay valid
    # while the items block updates in place.
    client = login(operator)
    item = mine.items.get()
    client.post(url("item_add", mine.pk), {"product": gift(mine).pk, "quantity": 1}, headers=HTMX)
    client.post(url("item_quantity", mine.pk, item.pk), {"quantity": 3}, headers=HTMX)
    client.post(url("item_remove", mine.pk, item.pk), headers=HTMX)
    assert Order.objects.get(pk=mine.pk).version == mine.version


@pytest.mark.parametrize("quantity", [0, -3, 1001, True])
def test_the_quantity_action_refuses_out_of_range_values(mine: Order, quantity: int) -> None:
    item = mine.items.get()
    with pytest.raises(FieldErrors) as exc:
        do_set_item_quantity(item, quantity)
    assert exc.value.errors == {"quantity": "must be between 1 and 1000"}
    assert OrderItem.objects.get(pk=item.pk).quantity == 2
    assert not AuditEvent.objects.filter(action="order.item_change").exists()


def test_the_quantity_action_records_nothing_when_nothing_changes(mine: Order) -> None:
    do_set_item_quantity(mine.items.get(), 2)
    assert not AuditEvent.objects.filter(action="order.item_change").exists()


def test_the_quantity_action_records_what_was_stored_not_what_a_stale_copy_said(
    mine: Order,
) -> None:
    stale = mine.items.get()
    OrderItem.objects.filter(pk=stale.pk).update(quantity=4)  # changed since `stale` was read
    do_set_item_quantity(stale, 6)
    event = AuditEvent.objects.get(action="order.item_change")
    assert event.changes == {f"item {stale.pk}": ["4 x TEA @ 990.00", "6 x TEA @ 990.00"]}


def test_the_add_form_asks_for_a_product_and_offers_upsells_first(
    operator: Membership, mine: Order
) -> None:
    html = login(operator).get(card_url(mine)).content.decode()
    select = html[
        html.index('name="product"') : html.index("</select>", html.index('name="product"'))
    ]
    options = select.split("<option")[1:]
    assert 'value=""' in options[0] and "Choose a product" in options[0]
    assert "selected" not in "".join(options[1:])
    upsells = {p.name for p in mine.project.products.filter(is_upsell=True, is_active=True)}
    first = options[1].split(">", 1)[1].split(",", 1)[0]
    assert first in upsells
