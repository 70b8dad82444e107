"""`reveal`: the only way a person gets the digits, checked and recorded."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from callvault.accounts.actions import do_set_capabilities
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.vault.actions import reveal


def test_an_owner_gets_the_digits_and_the_reveal_is_recorded(owner, order, phone):
    assert reveal(owner, order, "confirm delivery address") == phone[1]
    event = AuditEvent.objects.get(action="phone.reveal")
    assert event.object_id == str(order.pk)
    assert event.extra["purpose"] == "confirm delivery address"
    assert event.actor_kind == "system"  # no request here; pages record the member
    assert phone[1][2:] not in str(event.extra) + str(event.changes)


@pytest.mark.parametrize("who", ["operator", "trainee", "supervisor"])
def test_members_without_the_capability_are_refused_and_recorded(who, request, order, phone):
    member = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        reveal(member, order, "curious")
    refused = AuditEvent.objects.get(action="phone.reveal_refused")
    assert refused.object_id == str(order.pk)
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()


def test_an_operator_granted_the_capability_may_reveal(operator, order, phone):
    do_set_capabilities(operator, {"can_see_phones": True})
    assert reveal(operator, order, "customer asked") == phone[1]


def test_a_member_of_another_project_is_refused(outsider, order):
    with pytest.raises(PermissionDenied):
        reveal(outsider, order, "curious")


def test_a_deactivated_owner_is_refused(owner, order):
    owner.is_active = False
    with pytest.raises(PermissionDenied):
        reveal(owner, order, "curious")


def test_a_purpose_is_required(owner, order):
    with pytest.raises(FieldErrors) as exc:
        reveal(owner, order, "  ")
    assert "purpose" in exc.value.errors
    assert not AuditEvent.objects.filter(action="phone.reveal").exists()
