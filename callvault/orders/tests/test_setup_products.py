"""The products page: the shop's products, new ones, and edits of name, price and flags."""

from __future__ import annotations

from decimal import Decimal

import pytest

from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Product
from callvault.orders.setup_actions import do_update_product
from conftest import login

URL = "/p/alpha/setup/products/"


def tea(project) -> Product:
    return Product.objects.get(project=project, sku="TEA")


def test_the_list_shows_the_products(owner, project, django_assert_max_num_queries):
    client = login(owner)
    client.get(URL)  # the first page after logging in also records the session's bookkeeping
    # +2 since the login security: the allowed-networks check on every request, and the
    # owner's unread security notices in the settings menu.
    with django_assert_max_num_queries(10):
        response = client.get(URL, HTTP_ACCEPT_LANGUAGE="en")
    assert [p.sku for p in response.context["products"]] == ["GIFT", "TEA"]
    assert "990.00" in response.content.decode()


def test_an_owner_creates_a_product(owner, project):
    response = login(owner).post(
        URL, {"sku": "MUG", "name": "Mug", "price": "250.50", "is_upsell": "on"}
    )
    assert response.status_code == 302
    mug = Product.objects.get(project=project, sku="MUG")
    assert (mug.name, mug.price, mug.is_upsell, mug.is_active) == (
        "Mug",
        Decimal("250.50"),
        True,
        True,
    )
    event = AuditEvent.objects.get(action="product.create", object_id=str(mug.pk))
    assert (event.actor_name, event.changes["price"]) == ("alice", [None, "250.50"])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sku": "MUG", "name": "Mug", "price": "-1"}, "price"),
        ({"sku": "MUG", "name": "Mug", "price": "1.005"}, "price"),
        ({"sku": "TEA", "name": "Tea again", "price": "1"}, "sku"),
        ({"sku": "MUG", "name": "", "price": "1"}, "name"),
    ],
)
def test_bad_products_are_refused(owner, project, data, field):
    response = login(owner).post(URL, data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert Product.objects.filter(project=project).count() == 2
    assert not AuditEvent.objects.filter(action="product.create", actor_name="alice").exists()


def test_an_owner_edits_a_product_and_it_is_recorded(owner, project):
    product = tea(project)
    response = login(owner).post(
        f"{URL}{product.pk}/", {"name": "Green tea", "price": "1090", "is_upsell": "on"}
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.price, product.is_upsell, product.is_active) == (
        "Green tea",
        Decimal("1090.00"),
        True,
        False,
    )
    event = AuditEvent.objects.get(action="product.update")
    assert event.actor_name == "alice"
    assert event.changes == {
        "name": ["Tea", "Green tea"],
        "price": ["990.00", "1090.00"],
        "is_upsell": [False, True],
        "is_active": [True, False],
    }


def test_a_negative_price_is_refused_and_nothing_changes(owner, project):
    product = tea(project)
    response = login(owner).post(
        f"{URL}{product.pk}/", {"name": "Cheap tea", "price": "-5", "is_active": "on"}
    )
    assert "price" in response.context["form"].errors
    product.refresh_from_db()
    assert (product.name, product.price) == ("Tea", Decimal("990.00"))
    assert not AuditEvent.objects.filter(action="product.update").exists()


@pytest.mark.parametrize("price", ["-0.01", "1.001", "abc", "NaN", "1e20"])
def test_the_action_refuses_bad_prices_itself(project, price):
    product = tea(project)
    with pytest.raises(FieldErrors) as exc:
        do_update_product(product, name="Renamed", price=price)
    assert set(exc.value.errors) == {"price"}
    product.refresh_from_db()
    assert (product.name, product.price) == ("Tea", Decimal("990.00"))


def test_the_sku_cannot_be_edited(project):
    with pytest.raises(FieldErrors) as exc:
        do_update_product(tea(project), sku="COFFEE")
    assert set(exc.value.errors) == {"sku"}
