"""Projects, memberships, roles and capability flags; the one read chokepoint."""

from __future__ import annotations

import pytest
from django.http import Http404

from callvault.accounts.actions import (
    do_add_member,
    do_change_role,
    do_create_user,
    do_deactivate_member,
    do_set_capabilities,
    do_update_project,
)
from callvault.accounts.models import CAPABILITIES, ROLE_PRESETS, Project, Role, access_membership
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import do_assign_order
from callvault.orders.models import Order
from conftest import PASSWORD


@pytest.mark.parametrize("role", Role.values)
def test_a_new_member_gets_the_role_presets(project, role):
    user = do_create_user(f"u-{role}", PASSWORD, validate=False)
    member = do_add_member(project, user, role)
    assert {name for name, on in member.capabilities().items() if on} == ROLE_PRESETS[role]


def test_operators_and_trainees_may_not_see_phones_by_default(operator, trainee):
    assert not operator.can_see_phones
    assert not trainee.can_see_phones
    assert not operator.can_view_all_orders


def test_an_owner_can_change_one_flag_and_it_is_recorded(operator):
    do_set_capabilities(operator, {"can_see_phones": True})
    operator.refresh_from_db()
    assert operator.can_see_phones
    event = AuditEvent.objects.get(action="member.capabilities")
    assert event.changes == {"can_see_phones": [False, True]}


def test_unknown_capabilities_are_refused_by_name(operator):
    with pytest.raises(FieldErrors) as exc:
        do_set_capabilities(operator, {"can_fly": True})
    assert exc.value.errors == {"can_fly": "not a capability"}


def test_a_role_change_resets_the_flags_to_the_new_preset(operator):
    do_set_capabilities(operator, {"can_see_phones": True})
    do_change_role(operator, Role.SUPERVISOR)
    assert operator.capabilities()["can_view_all_orders"]
    assert not operator.can_see_phones
    assert AuditEvent.objects.filter(action="member.role").exists()


def test_a_user_can_belong_to_several_projects(operator, other_project):
    do_add_member(other_project, operator.user, Role.SUPERVISOR)
    assert set(Project.objects.visible_to(operator.user).values_list("slug", flat=True)) == {
        "alpha",
        "beta",
    }


def test_a_user_cannot_join_a_project_twice(operator):
    with pytest.raises(FieldErrors):
        do_add_member(operator.project, operator.user, Role.TRAINEE)


def test_access_membership_answers_404_for_other_projects_and_the_deactivated(operator, outsider):
    assert access_membership(operator.user, "alpha") == operator
    with pytest.raises(Http404):
        access_membership(outsider.user, "alpha")
    with pytest.raises(Http404):
        access_membership(operator.user, "no-such-project")
    do_deactivate_member(operator)
    with pytest.raises(Http404):
        access_membership(operator.user, "alpha")


def test_orders_visible_to_an_operator_are_only_their_own(project, owner, operator, order):
    assert list(Order.objects.visible_to(operator)) == []
    assert list(Order.objects.visible_to(owner)) == [order]
    do_assign_order(order, operator.user)
    assert list(Order.objects.visible_to(operator)) == [order]


def test_orders_of_another_project_are_never_visible(outsider, order):
    assert list(Order.objects.visible_to(outsider)) == []


def test_a_deactivated_member_sees_nothing(owner, order):
    do_deactivate_member(owner)
    assert list(Order.objects.visible_to(owner)) == []


def test_project_settings_changes_are_recorded_and_checked(project):
    do_update_project(project, mask_visible_digits=4)
    assert AuditEvent.objects.get(action="project.update").changes == {
        "mask_visible_digits": [2, 4]
    }
    with pytest.raises(FieldErrors):
        do_update_project(project, mask_visible_digits=9)
    with pytest.raises(FieldErrors):
        do_update_project(project, order_seq=0)


def test_every_capability_is_a_model_field():
    from callvault.accounts.models import Membership

    fields = {f.name for f in Membership._meta.get_fields()}
    assert set(CAPABILITIES) <= fields
