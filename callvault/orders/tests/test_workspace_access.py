"""Who may use the workspace's endpoints: the same answers for every one of them."""

from __future__ import annotations

from typing import Any

import pytest

from callvault.accounts.models import Membership, Project, Role
from callvault.audit.models import AuditEvent
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.orders.tests.workspace_support import (
    WRITES,
    fingerprint,
    login,
    url,
    whole_day,
    write_body,
)
from conftest import make_member

ITEM_WRITES = {"item_quantity": {"quantity": 5}, "item_remove": {}}


def every_write(order: Order) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, address, valid body) of each endpoint that changes the order."""
    item = order.items.get()
    writes = [(name, url(name, order.pk), write_body(name, order)) for name in WRITES]
    writes += [(name, url(name, order.pk, item.pk), body) for name, body in ITEM_WRITES.items()]
    return writes


def test_it_sends_anonymous_visitors_to_login(order: Order) -> None:
    before = fingerprint(order)
    client = HttpsClient()
    for name, address, body in every_write(order):
        response = client.post(address, body)
        assert response.status_code == 302, name
        assert response["Location"].startswith("/accounts/login/"), name
    for address in (url("mine"), url("next")):
        assert client.post(address)["Location"].startswith("/accounts/login/")
    assert fingerprint(order) == before


def test_it_hides_every_endpoint_from_an_outsider(outsider: Membership, order: Order) -> None:
    before = fingerprint(order)
    client = login(outsider)
    for name, address, body in every_write(order):
        assert client.post(address, body).status_code == 404, name
        # Not under their own project's address either.
        theirs = address.replace("/p/alpha/", "/p/beta/")
        assert client.post(theirs, body).status_code == 404, name
    assert client.get(url("mine")).status_code == 404
    assert client.post(url("next")).status_code == 404
    assert fingerprint(order) == before


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_an_operator_cannot_act_on_an_order_that_is_not_theirs(
    role: str, request: pytest.FixtureRequest, project: Project, order: Order
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, make_member(project, "olga", Role.OPERATOR).user)
    before = fingerprint(order)
    client = login(member)
    for name, address, body in every_write(order):
        assert client.post(address, body).status_code == 404, name
    assert fingerprint(order) == before


def test_an_operator_loses_the_order_when_the_queue_lock_is_gone(
    operator: Membership, project: Project, order: Order
) -> None:
    whole_day(project)
    client = login(operator)
    assert client.post(url("next")).status_code == 302
    assert client.get(url("card", order.pk)).status_code == 200
    Order.objects.filter(pk=order.pk).update(locked_until=None, locked_by=None)
    before = fingerprint(order)
    for name, address, body in every_write(order):
        assert client.post(address, body).status_code == 404, name
    assert fingerprint(order) == before


def test_a_member_who_may_not_edit_orders_may_look_but_not_change(
    supervisor: Membership, order: Order
) -> None:
    Membership.objects.filter(pk=supervisor.pk).update(can_edit_orders=False)
    before = fingerprint(order)
    client = login(supervisor)
    page = client.get(url("card", order.pk))
    assert page.status_code == 200
    assert 'name="version"' not in page.content.decode()  # no work forms shown
    for name, address, body in every_write(order):
        assert client.post(address, body).status_code == 403, name
    assert client.post(url("next")).status_code == 403
    assert fingerprint(order) == before
    assert not AuditEvent.objects.filter(action="order.claim").exists()


@pytest.mark.parametrize("role", ["supervisor", "owner"])
def test_supervisors_and_owners_may_work_any_order_of_the_project(
    role: str, request: pytest.FixtureRequest, project: Project, order: Order
) -> None:
    member: Membership = request.getfixturevalue(role)
    do_assign_order(order, make_member(project, "olga", Role.OPERATOR).user)
    response = login(member).post(url("comment", order.pk), {"text": "checked by a supervisor"})
    assert response.status_code == 302
    assert order.comments.filter(text="checked by a supervisor").exists()


def test_writes_take_only_post(operator: Membership, order: Order) -> None:
    do_assign_order(order, operator.user)
    before = fingerprint(order)
    client = login(operator)
    for name, address, _body in every_write(order):
        assert client.get(address).status_code == 405, name
    assert client.get(url("next")).status_code == 405
    assert fingerprint(order) == before
