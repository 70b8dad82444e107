"""`callvault vault rotate`: re-sealing under a new key while old values keep opening."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from callvault.audit.models import AuditEvent
from callvault.lib.fakephones import fake_phone_numbers
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.vault.actions import reveal
from callvault.vault.keyring import (
    KeyRing,
    get_keyring,
    write_keyring_file,
)
from callvault.vault.phones import key_id_of, open_phone, parse_phone, seal


def make_orders(project, count, rng):
    return [
        do_create_order(project, Lead(phone=raw, name=f"c{i}")).order
        for i, raw in enumerate(fake_phone_numbers(count, rng))
    ]


def test_rotation_reseals_every_order_and_old_values_still_open(
    own_ring, project, owner, rng, capsys
):
    orders = make_orders(project, 25, rng)
    before = {o.pk: reveal(owner, o, "check") for o in orders}
    assert {key_id_of(o.phone_sealed) for o in orders} == {"k1"}

    call_command("vault", "rotate", "--batch", "7")

    assert get_keyring().active == "k2"
    for order in Order.objects.filter(pk__in=before):
        assert key_id_of(order.phone_sealed) == "k2"
        assert reveal(owner, order, "check") == before[order.pk]
    # One event per batch of seven: 25 values -> 4 batches.
    assert AuditEvent.objects.filter(action="vault.rotate").count() == 4
    assert "re-sealed 25 values under k2" in capsys.readouterr().out


def test_rotation_keeps_the_blind_index_so_search_still_finds_orders(own_ring, project, rng):
    (order,) = make_orders(project, 1, rng)
    index = order.phone_index
    call_command("vault", "rotate")
    order.refresh_from_db()
    assert order.phone_index == index


def test_a_process_holding_the_old_ring_opens_values_sealed_under_the_new_key(
    own_ring, project, rng
):
    (order,) = make_orders(project, 1, rng)
    plain = open_phone(order.phone_sealed, project_id=project.pk, field="phone")
    old_ring = get_keyring()
    # Another process rotates: writes the file and re-seals.
    write_keyring_file(own_ring, old_ring.with_new_key())
    new_ring = KeyRing.from_json(own_ring.read_text())
    resealed = seal(plain, project_id=project.pk, field="phone", ring=new_ring)
    # This process still has the old ring cached, meets "k2" and re-reads the file.
    assert get_keyring() is old_ring
    assert open_phone(resealed, project_id=project.pk, field="phone") == plain


def test_resume_finishes_values_written_under_an_old_key_meanwhile(own_ring, project, rng):
    make_orders(project, 3, rng)
    call_command("vault", "rotate")
    # A web process that had not re-read the ring sealed one more number under k1.
    order = Order.objects.first()
    assert order is not None
    plain = open_phone(order.phone_sealed, project_id=project.pk, field="phone")
    ring = get_keyring()
    stale = KeyRing(active="k1", seal_keys=ring.seal_keys, index_key=ring.index_key)
    Order.objects.filter(pk=order.pk).update(
        phone_sealed=seal(plain, project_id=project.pk, field="phone", ring=stale)
    )
    with pytest.raises(CommandError, match="still seals"):
        call_command("vault", "retire", "k1")
    call_command("vault", "rotate", "--resume")
    call_command("vault", "retire", "k1")
    assert set(KeyRing.from_json(own_ring.read_text()).seal_keys) == {"k2"}
    order.refresh_from_db()
    assert open_phone(order.phone_sealed, project_id=project.pk, field="phone") == plain
    assert parse_phone(plain, region="RU").e164 == plain


def test_status_counts_values_per_key(own_ring, project, rng, capsys):
    make_orders(project, 4, rng)
    call_command("vault", "status")
    out = capsys.readouterr().out
    assert "active key: k1" in out
    assert "orders.Order.phone_sealed: k1: 4" in out
