"""Allowed networks as data: validation, normalisation, the record, who may change which list,
and the self-lockout guard."""

from __future__ import annotations

import pytest

from callvault.accounts.actions import do_create_api_key
from callvault.accounts.allowlist import (
    SelfLockout,
    do_add_network,
    do_remove_network,
    inside_allowed_networks,
    key_may_enter_from,
    member_may_enter_from,
    normalise_network,
)
from callvault.accounts.models import AllowedNetwork
from callvault.audit.models import ActorKind, AuditEvent
from callvault.lib.errors import FieldErrors


def test_adding_a_range_records_it_with_its_label(project):
    row, note = do_add_network(project, "192.0.2.0/24", "Office")
    assert note == ""
    event = AuditEvent.objects.get(action="allowed_network.add")
    assert (event.object_type, event.object_id) == ("allowed_network", str(row.pk))
    assert event.project_id == project.pk
    assert event.changes == {"network": [None, "192.0.2.0/24"], "label": [None, "Office"]}
    assert event.extra["list"] == "project"


def test_removing_a_range_records_what_it_was(project):
    row, _ = do_add_network(project, "192.0.2.0/24", "Office")
    do_remove_network(row)
    assert not AllowedNetwork.objects.exists()
    event = AuditEvent.objects.get(action="allowed_network.remove")
    assert (event.object_type, event.object_id) == ("allowed_network", str(row.pk))
    assert event.changes == {"network": ["192.0.2.0/24", None], "label": ["Office", None]}


@pytest.mark.django_db(transaction=True)
def test_no_change_is_left_unattributed(project, operator):
    """Committed for real, so PostgreSQL's deferred triggers run; SQLite's parked rows are
    swept."""
    from callvault.audit.parked import sweep_pending_changes

    row, _ = do_add_network(project, "192.0.2.0/24", "Office", membership=operator)
    do_remove_network(row)
    sweep_pending_changes()
    assert not AuditEvent.objects.filter(actor_kind=ActorKind.UNATTRIBUTED).exists()
    assert AuditEvent.objects.get(action="allowed_network.add").extra["member"] == "bob"


@pytest.mark.parametrize(
    "spec", ["192.0.2.0/33", "192.0.2", "office", "2001:db8::/129", "10.0.0.0/8/8", "1.2.3.4/-1"]
)
def test_a_bad_cidr_is_refused_with_an_error_on_the_network_field(project, spec):
    with pytest.raises(FieldErrors) as caught:
        do_add_network(project, spec, "Office")
    assert set(caught.value.errors) == {"network"}
    assert not AllowedNetwork.objects.exists()


def test_host_bits_are_cleared_and_the_person_is_told(project):
    row, note = do_add_network(project, "192.0.2.77/24", "Office")
    assert row.network == "192.0.2.0/24"
    assert "192.0.2.77/24" in note and "192.0.2.0/24" in note


def test_an_ipv6_range_is_stored_in_its_short_form(project):
    row, note = do_add_network(project, "2001:0DB8:0000::/32", "Office v6")
    assert (row.network, note) == ("2001:db8::/32", "")


def test_an_ipv4_mapped_range_is_stored_as_ipv4(project):
    stored, note = normalise_network("::ffff:192.0.2.0/120")
    assert stored == "192.0.2.0/24"
    assert "IPv4" in note


def test_a_bare_address_is_one_host(project):
    assert normalise_network("198.51.100.7") == ("198.51.100.7/32", "")
    assert normalise_network("2001:db8::7") == ("2001:db8::7/128", "")


def test_a_duplicate_in_the_same_list_is_refused_even_spelled_otherwise(project, operator):
    do_add_network(project, "192.0.2.0/24", "Office")
    with pytest.raises(FieldErrors) as caught:
        do_add_network(project, "192.0.2.9/24", "Office again")
    assert "network" in caught.value.errors
    # The same range on a member's own list is another list.
    do_add_network(project, "192.0.2.0/24", "Office", membership=operator)
    assert AllowedNetwork.objects.count() == 2


def test_a_label_is_required(project):
    with pytest.raises(FieldErrors) as caught:
        do_add_network(project, "192.0.2.0/24", "  ")
    assert set(caught.value.errors) == {"label"}


def test_a_member_may_enter_from_the_projects_ranges_and_their_own(project, operator, supervisor):
    assert member_may_enter_from(operator, "203.0.113.9")  # no ranges: anywhere
    assert not inside_allowed_networks(operator, "203.0.113.9")
    do_add_network(project, "192.0.2.0/24", "Office")
    do_add_network(project, "203.0.113.0/24", "Home", membership=operator)
    assert member_may_enter_from(operator, "203.0.113.9")
    assert member_may_enter_from(operator, "192.0.2.1")
    assert not member_may_enter_from(supervisor, "203.0.113.9")
    assert member_may_enter_from(supervisor, "::ffff:192.0.2.1")


def test_ipv6_ranges_hold_ipv6_addresses(project, operator):
    do_add_network(project, "2001:db8:1::/48", "Office v6")
    assert member_may_enter_from(operator, "2001:db8:1::42")
    assert not member_may_enter_from(operator, "2001:db8:2::42")
    assert not member_may_enter_from(operator, "192.0.2.1")


def test_a_key_with_ranges_is_held_to_them_and_not_to_the_projects(project):
    key, _ = do_create_api_key(project, "Partner", can_read_orders=True)
    do_add_network(project, "192.0.2.0/24", "Office")
    assert not key_may_enter_from(key, "198.51.100.1")
    do_add_network(project, "198.51.100.0/24", "Partner server", api_key=key)
    assert key_may_enter_from(key, "198.51.100.1")
    assert not key_may_enter_from(key, "192.0.2.1")


def test_a_key_that_only_posts_leads_is_not_held_to_the_projects_list(project):
    key, _ = do_create_api_key(project, "Landing")
    do_add_network(project, "192.0.2.0/24", "Office")
    assert key_may_enter_from(key, "198.51.100.1")
    do_add_network(project, "203.0.113.0/24", "Landing server", api_key=key)
    assert not key_may_enter_from(key, "198.51.100.1")


def test_only_an_owner_changes_the_projects_list(project, owner, supervisor):
    with pytest.raises(FieldErrors):
        do_add_network(project, "192.0.2.0/24", "Office", acting=supervisor)
    row, _ = do_add_network(project, "192.0.2.0/24", "Office", acting=owner)
    with pytest.raises(FieldErrors):
        do_remove_network(row, acting=supervisor)
    assert AllowedNetwork.objects.count() == 1


def test_a_list_of_another_project_cannot_be_changed(project, owner, outsider):
    with pytest.raises(FieldErrors):
        do_add_network(project, "192.0.2.0/24", "Office", acting=outsider)
    with pytest.raises(FieldErrors):
        do_add_network(outsider.project, "192.0.2.0/24", "Office", membership=owner)


def test_an_owner_must_confirm_a_first_range_that_leaves_out_their_address(project, owner):
    with pytest.raises(SelfLockout) as caught:
        do_add_network(project, "192.0.2.0/24", "Office", acting=owner, from_ip="203.0.113.5")
    assert caught.value.ip == "203.0.113.5"
    assert not AllowedNetwork.objects.exists()
    assert not AuditEvent.objects.filter(action="allowed_network.add").exists()
    do_add_network(
        project, "192.0.2.0/24", "Office", acting=owner, from_ip="203.0.113.5", confirmed=True
    )
    assert AuditEvent.objects.get(action="allowed_network.add").extra["lockout_confirmed"]


def test_a_range_that_includes_the_owners_address_needs_no_confirmation(project, owner):
    do_add_network(project, "203.0.113.0/24", "Home", acting=owner, from_ip="203.0.113.5")
    # Once inside, further ranges do not change that.
    do_add_network(project, "192.0.2.0/24", "Office", acting=owner, from_ip="203.0.113.5")
    assert AllowedNetwork.objects.count() == 2


def test_removing_the_range_the_owner_stands_in_must_be_confirmed(project, owner):
    home, _ = do_add_network(project, "203.0.113.0/24", "Home")
    office, _ = do_add_network(project, "192.0.2.0/24", "Office")
    with pytest.raises(SelfLockout):
        do_remove_network(home, acting=owner, from_ip="203.0.113.5")
    do_remove_network(office, acting=owner, from_ip="203.0.113.5")
    # Removing the last range opens the list to everyone: no lockout.
    do_remove_network(home, acting=owner, from_ip="203.0.113.5")
    assert not AllowedNetwork.objects.exists()
