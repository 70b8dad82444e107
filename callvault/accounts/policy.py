"""A project's security policy: its defaults, how it is read, and how it is changed."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from callvault.accounts.models import (
    DEFAULT_IDLE_MINUTES,
    Membership,
    Project,
    Role,
    RolePolicy,
    SecurityPolicy,
    TwoFactorRule,
)
from callvault.audit.recorder import diff, record_event, record_update, snapshot
from callvault.lib.errors import FieldErrors

# The policy's editable fields, each recorded as before -> after.
POLICY_FIELDS = (
    "password_min_length",
    "password_min_score",
    "password_max_age_days",
    "session_max_hours",
    "one_session_per_operator",
    "end_session_on_ip_change",
    "step_up_minutes",
)
ROLE_POLICY_FIELDS = ("two_factor", "idle_minutes", "networks_required")

# Bounds a policy may not leave: below them the policy would protect nothing, above them
# it would lock honest people out.
LIMITS: dict[str, tuple[int, int]] = {
    "password_min_length": (8, 128),
    "password_min_score": (0, 4),
    "password_max_age_days": (1, 3650),
    "session_max_hours": (1, 24 * 30),
    "step_up_minutes": (1, 60),
    "idle_minutes": (1, 24 * 60),
}


def create_default_policy(project: Project) -> SecurityPolicy:
    """A new project's policy and one row per role, each recorded (called by
    do_create_project inside its transaction)."""
    policy = SecurityPolicy.objects.create(project=project)
    record_event(
        "security_policy.create",
        project_id=project.pk,
        object_type="security_policy",
        object_id=policy.pk,
        object_repr=str(project),
        changes=diff({}, snapshot(policy, POLICY_FIELDS)),
    )
    for role in Role.values:
        row = RolePolicy.objects.create(
            project=project, role=role, idle_minutes=DEFAULT_IDLE_MINUTES[role]
        )
        record_event(
            "role_policy.create",
            project_id=project.pk,
            object_type="role_policy",
            object_id=row.pk,
            object_repr=role,
            changes=diff({}, snapshot(row, ("role", *ROLE_POLICY_FIELDS))),
        )
    return policy


def policy_for(project: Project | int) -> SecurityPolicy:
    """The project's policy (every project has one from its creation)."""
    project_id = project if isinstance(project, int) else project.pk
    return SecurityPolicy.objects.get(project_id=project_id)


def role_policy(member: Membership) -> RolePolicy:
    """What the member's project asks of the member's role."""
    return RolePolicy.objects.get(project_id=member.project_id, role=member.role)


def _check_limits(values: dict[str, Any]) -> None:
    errors = {}
    for name, value in values.items():
        if name in LIMITS and value is not None:
            low, high = LIMITS[name]
            if not low <= int(value) <= high:
                errors[name] = f"must be between {low} and {high}"
    if errors:
        raise FieldErrors(errors)


@transaction.atomic
def do_update_security_policy(policy: SecurityPolicy, **values: Any) -> SecurityPolicy:
    """Change the project's policy; unknown names and values out of bounds are refused."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise FieldErrors({name: "not a policy setting" for name in sorted(unknown)})
    _check_limits(values)
    policy = SecurityPolicy.objects.select_for_update().get(pk=policy.pk)
    record_update(
        "security_policy.update",
        policy,
        values,
        project_id=policy.project_id,
        object_type="security_policy",
        object_repr=str(policy.project),
    )
    return policy


@transaction.atomic
def do_update_role_policy(row: RolePolicy, **values: Any) -> RolePolicy:
    """Change what the project asks of one role."""
    unknown = set(values) - set(ROLE_POLICY_FIELDS)
    if unknown:
        raise FieldErrors({name: "not a role setting" for name in sorted(unknown)})
    if "two_factor" in values and values["two_factor"] not in TwoFactorRule.values:
        raise FieldErrors.one("two_factor", "not a second-factor rule")
    _check_limits(values)
    row = RolePolicy.objects.select_for_update().get(pk=row.pk)
    record_update(
        "role_policy.update",
        row,
        values,
        project_id=row.project_id,
        object_type="role_policy",
        object_repr=row.role,
    )
    return row
