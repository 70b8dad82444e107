"""Every change to users, projects, memberships and API keys; each is atomic and audited."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from callvault.accounts.models import (
    CAPABILITIES,
    ROLE_PRESETS,
    ApiKey,
    Membership,
    Project,
    Role,
    User,
    hash_api_key,
)
from callvault.accounts.policy import create_default_policy
from callvault.audit.context import Actor
from callvault.audit.recorder import SEALED_CHANGED, diff, record_event, snapshot
from callvault.lib.errors import FieldErrors

API_KEY_PREFIX = "cvk"

# A project's editable settings: each change is recorded as before -> after.
PROJECT_SETTINGS = (
    "name",
    "default_region",
    "time_zone",
    "mask_visible_digits",
    "duplicate_window_hours",
    "thank_you_url",
)


# What the record keeps of a new user (the password only as "changed"; empty names left out).
USER_AUDITED_FIELDS = ("username", "first_name", "last_name", "email", "must_change_password")


@transaction.atomic
def do_create_user(
    username: str,
    password: str,
    *,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    validate: bool = True,
    must_change_password: bool = False,
) -> User:
    """A user with a password that passed the policy (unless validate=False, for demo data);
    must_change_password when someone other than the user chose it."""
    if User.objects.filter(username__iexact=username).exists():
        raise FieldErrors.one("username", "this username is taken")
    user = User(
        username=username,
        first_name=first_name,
        last_name=last_name,
        email=email,
        must_change_password=must_change_password,
        password_changed_at=timezone.now(),
    )
    if validate:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise FieldErrors.one("password", " ".join(exc.messages)) from None
    user.set_password(password)
    user.save()
    record_event(
        "user.create",
        project_id=None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes={
            **diff({}, snapshot(user, USER_AUDITED_FIELDS)),
            "password": SEALED_CHANGED,
        },
    )
    return user


@transaction.atomic
def do_change_password(user: User, new_password: str) -> User:
    """The user replaces their own password; it must pass the policy, and a password someone
    else chose (must_change_password) must not be kept."""
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise FieldErrors.one("new_password1", " ".join(exc.messages)) from None
    if user.must_change_password and user.check_password(new_password):
        raise FieldErrors.one("new_password1", _("Choose a password different from the old one."))
    before = snapshot(user, ["must_change_password"])
    user.set_password(new_password)
    user.must_change_password = False
    user.password_changed_at = timezone.now()
    user.save(update_fields=["password", "must_change_password", "password_changed_at"])
    record_event(
        "user.password_change",
        project_id=None,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes={
            "password": SEALED_CHANGED,
            **diff(before, snapshot(user, ["must_change_password"])),
        },
    )
    return user


@transaction.atomic
def do_create_project(
    name: str, slug: str, *, default_region: str = "RU", time_zone: str = "Europe/Moscow"
) -> Project:
    """A new project (the caller seeds its statuses through orders.actions)."""
    if Project.objects.filter(slug=slug).exists():
        raise FieldErrors.one("slug", "a project with this slug exists")
    project = Project.objects.create(
        name=name, slug=slug, default_region=default_region.upper(), time_zone=time_zone
    )
    record_event(
        "project.create",
        project_id=project.pk,
        object_type="project",
        object_id=project.pk,
        object_repr=name,
        changes=diff({}, snapshot(project, ("slug", *PROJECT_SETTINGS))),
    )
    create_default_policy(project)
    return project


@transaction.atomic
def do_update_project(project: Project, **values: Any) -> Project:
    """Change project settings; unknown names are refused."""
    unknown = set(values) - set(PROJECT_SETTINGS)
    if unknown:
        raise FieldErrors({name: "not a project setting" for name in sorted(unknown)})
    if "mask_visible_digits" in values and not 0 <= int(values["mask_visible_digits"]) <= 4:
        raise FieldErrors.one("mask_visible_digits", "must be between 0 and 4")
    before = snapshot(project, values)
    for name, value in values.items():
        setattr(project, name, value)
    project.save(update_fields=list(values))
    changes = diff(before, snapshot(project, values))
    if changes:
        record_event(
            "project.update",
            project_id=project.pk,
            object_type="project",
            object_id=project.pk,
            object_repr=project.name,
            changes=changes,
        )
    return project


# Capabilities only an owner may give or take away: they open the customers' numbers, the
# member list itself (and with it every other capability) and bulk exports.
OWNER_ONLY_CAPABILITIES = frozenset({"can_see_phones", "can_manage_members", "can_export"})


def may_manage(acting: Membership, target: Membership) -> bool:
    """Whether the acting member may change the target member at all: never themselves (so
    nobody locks themselves out), and a non-owner only members who are not owners and hold
    none of the owner-only capabilities (else an admin could demote, lock out or take over
    the account of someone more powerful)."""
    if not (acting.is_active and acting.can_manage_members):
        return False
    if acting.project_id != target.project_id or acting.pk == target.pk:
        return False
    if acting.role == Role.OWNER:
        return True
    return target.role != Role.OWNER and not any(
        getattr(target, name) for name in OWNER_ONLY_CAPABILITIES
    )


def may_give_role(acting: Membership, role: str) -> bool:
    """Owners give any role; others only roles without owner-only capabilities."""
    return acting.role == Role.OWNER or not (ROLE_PRESETS[role] & OWNER_ONLY_CAPABILITIES)


def _check_manages(acting: Membership | None, target: Membership) -> None:
    if acting is None:  # commands and seeding: no acting member, no member policy
        return
    if acting.pk == target.pk:
        raise FieldErrors.one("member", _("You cannot change your own membership."))
    if not may_manage(acting, target):
        raise FieldErrors.one("member", _("Only an owner may change this member."))


def _check_role(acting: Membership | None, project: Project, role: str) -> None:
    if role not in Role.values:
        raise FieldErrors.one("role", _("Unknown role."))
    if acting is None:
        return
    if acting.project_id != project.pk or not (acting.is_active and acting.can_manage_members):
        raise FieldErrors.one("member", _("You may not manage the members of this project."))
    if not may_give_role(acting, role):
        raise FieldErrors.one("role", _("Only an owner may give this role."))


@transaction.atomic
def do_create_member(
    project: Project,
    *,
    username: str,
    password: str,
    role: str,
    first_name: str = "",
    last_name: str = "",
    acting: Membership | None = None,
) -> Membership:
    """A new user who joins the project; they must change the password (chosen for them)
    at their first login."""
    _check_role(acting, project, role)
    user = do_create_user(
        username,
        password,
        first_name=first_name,
        last_name=last_name,
        must_change_password=True,
    )
    return do_add_member(project, user, role, acting=acting)


@transaction.atomic
def do_add_member(
    project: Project, user: User, role: str, *, acting: Membership | None = None
) -> Membership:
    """Make the user a member with the role's preset capabilities."""
    _check_role(acting, project, role)
    if Membership.objects.filter(project=project, user=user).exists():
        raise FieldErrors.one("user", "already a member of this project")
    preset = ROLE_PRESETS[role]
    member = Membership.objects.create(
        project=project, user=user, role=role, **{name: name in preset for name in CAPABILITIES}
    )
    record_event(
        "member.add",
        project_id=project.pk,
        object_type="membership",
        object_id=member.pk,
        object_repr=user.username,
        changes={"role": [None, role], **{n: [None, True] for n in sorted(preset)}},
    )
    return member


@transaction.atomic
def do_change_role(
    member: Membership, role: str, *, acting: Membership | None = None
) -> Membership:
    """A new role, resetting the capability flags to that role's preset."""
    _check_manages(acting, member)
    _check_role(acting, member.project, role)
    fields = ["role", *CAPABILITIES]
    before = snapshot(member, fields)
    member.role = role
    for name in CAPABILITIES:
        setattr(member, name, name in ROLE_PRESETS[role])
    member.save(update_fields=fields)
    record_event(
        "member.role",
        project_id=member.project_id,
        object_type="membership",
        object_id=member.pk,
        object_repr=member.user.username,
        changes=diff(before, snapshot(member, fields)),
    )
    return member


@transaction.atomic
def do_set_capabilities(
    member: Membership, flags: dict[str, bool], *, acting: Membership | None = None
) -> Membership:
    """A per-member adjustment of capability flags; only owners change the owner-only ones."""
    unknown = set(flags) - set(CAPABILITIES)
    if unknown:
        raise FieldErrors({name: "not a capability" for name in sorted(unknown)})
    _check_manages(acting, member)
    if acting is not None and acting.role != Role.OWNER:
        refused = {
            name: _("Only an owner may change this capability.")
            for name, value in flags.items()
            if name in OWNER_ONLY_CAPABILITIES and bool(value) != getattr(member, name)
        }
        if refused:
            raise FieldErrors(refused)
    before = snapshot(member, flags)
    for name, value in flags.items():
        setattr(member, name, bool(value))
    member.save(update_fields=list(flags))
    changes = diff(before, snapshot(member, flags))
    if changes:
        record_event(
            "member.capabilities",
            project_id=member.project_id,
            object_type="membership",
            object_id=member.pk,
            object_repr=member.user.username,
            changes=changes,
        )
    return member


def _set_member_active(member: Membership, active: bool, acting: Membership | None) -> Membership:
    _check_manages(acting, member)
    if member.is_active != active:
        member.is_active = active
        member.save(update_fields=["is_active"])
        record_event(
            "member.reactivate" if active else "member.deactivate",
            project_id=member.project_id,
            object_type="membership",
            object_id=member.pk,
            object_repr=member.user.username,
            changes={"is_active": [not active, active]},
        )
    return member


@transaction.atomic
def do_deactivate_member(member: Membership, *, acting: Membership | None = None) -> Membership:
    """Take a member out of the project without deleting the record of what they did."""
    return _set_member_active(member, False, acting)


@transaction.atomic
def do_reactivate_member(member: Membership, *, acting: Membership | None = None) -> Membership:
    """Let a deactivated member back in, with the role and capabilities they had."""
    return _set_member_active(member, True, acting)


@transaction.atomic
def do_reset_password(
    member: Membership, password: str, *, acting: Membership | None = None
) -> Membership:
    """Give a member a new password chosen for them (shown once to whoever reset it); they
    must change it at their next login. A user who also belongs to another project, or who
    is staff, is refused: this project's managers must not take over an account that opens
    doors elsewhere."""
    _check_manages(acting, member)
    user = member.user
    elsewhere = Membership.objects.filter(user=user).exclude(project_id=member.project_id)
    if user.is_staff or user.is_superuser or elsewhere.exists():
        raise FieldErrors.one(
            "member",
            _("This user also has access elsewhere; only they can change their password."),
        )
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise FieldErrors.one("password", " ".join(exc.messages)) from None
    before = snapshot(user, ["must_change_password"])
    user.set_password(password)
    user.must_change_password = True
    user.password_changed_at = timezone.now()
    user.save(update_fields=["password", "must_change_password", "password_changed_at"])
    record_event(
        "user.password_reset",
        project_id=member.project_id,
        object_type="user",
        object_id=user.pk,
        object_repr=user.username,
        changes={
            "password": SEALED_CHANGED,
            **diff(before, snapshot(user, ["must_change_password"])),
        },
    )
    return member


@transaction.atomic
def do_create_api_key(
    project: Project,
    name: str,
    *,
    created_by: User | None = None,
    can_create_leads: bool = True,
    can_read_orders: bool = False,
    can_update_orders: bool = False,
    can_read_audit: bool = False,
) -> tuple[ApiKey, str]:
    """A new key; the secret is returned once and only its hash is kept."""
    name = name.strip()
    if not name or len(name) > 100:
        raise FieldErrors.one("name", "a name of 1 to 100 characters is required")
    prefix = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        project=project,
        name=name,
        prefix=prefix,
        secret_hash=hash_api_key(secret),
        created_by=created_by,
        can_create_leads=can_create_leads,
        can_read_orders=can_read_orders,
        can_update_orders=can_update_orders,
        can_read_audit=can_read_audit,
    )
    record_event(
        "api_key.create",
        project_id=project.pk,
        object_type="api_key",
        object_id=key.pk,
        object_repr=str(key),
        changes={
            "name": [None, name],
            "can_create_leads": [None, can_create_leads],
            "can_read_orders": [None, can_read_orders],
            "can_update_orders": [None, can_update_orders],
            "can_read_audit": [None, can_read_audit],
        },
    )
    return key, secret


@transaction.atomic
def do_revoke_api_key(key: ApiKey) -> ApiKey:
    """Revoke a key; it answers 401 from then on."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        record_event(
            "api_key.revoke",
            project_id=key.project_id,
            object_type="api_key",
            object_id=key.pk,
            object_repr=str(key),
            changes={"revoked_at": [None, key.revoked_at.isoformat()]},
        )
    return key


def api_key_actor(key: ApiKey) -> Actor:
    """The actor an API key's requests are recorded as."""
    return Actor.api_key(key.pk, key.name)


LAST_USED_GRANULARITY_SECONDS = 60


def authenticate_api_key(raw: str | None) -> ApiKey | None:
    """The key a secret belongs to, or None; a refused key is audited (by prefix, never secret)."""
    raw = (raw or "").strip()
    parts = raw.split("_", 2)  # the secret part may itself contain "_"
    key: ApiKey | None = None
    if len(parts) == 3 and parts[0] == API_KEY_PREFIX:
        key = ApiKey.objects.select_related("project").filter(prefix=parts[1]).first()
    valid = (
        key is not None
        and key.revoked_at is None
        and secrets.compare_digest(key.secret_hash, hash_api_key(raw))
    )
    if not valid:
        if raw:
            reason = "unknown" if key is None else ("revoked" if key.revoked_at else "wrong secret")
            record_event(
                "api_key.refused",
                project_id=key.project_id if key else None,
                object_type="api_key",
                object_id=key.pk if key else "",
                extra={"prefix": parts[1][:12] if len(parts) == 3 else "", "reason": reason},
            )
        return None
    assert key is not None
    now = timezone.now()
    # One write a minute at most: "last used" needs no more precision than that.
    stale = key.last_used_at is None or (now - key.last_used_at).total_seconds() > (
        LAST_USED_GRANULARITY_SECONDS
    )
    if stale:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
