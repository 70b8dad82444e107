"""Who may enter: users, projects, memberships with roles and capabilities, API keys."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.http import Http404
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.db.models import QuerySet


class User(AbstractUser):
    """A person who logs in; what they may do lives on their memberships."""

    # Set when someone else chose the password (a new member, a reset): the password was
    # seen by them, so its owner must replace it before doing anything else.
    must_change_password = models.BooleanField(
        _("must change the password at the next login"), default=False
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.get_full_name() or self.username


class ProjectQuerySet(models.QuerySet["Project"]):
    """Projects as seen by someone."""

    def visible_to(self, user: Any) -> ProjectQuerySet:
        """The projects the user is an active member of."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user=user, memberships__is_active=True)


def default_duplicate_window() -> int:
    """The installation's default (CALLVAULT_DUPLICATE_WINDOW_HOURS) for new projects."""
    return int(settings.LEADS_DUPLICATE_WINDOW_HOURS)


class Project(models.Model):
    """One shop or offer: its orders, members, keys and settings belong to it."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    default_region = models.CharField(
        _("default phone region"),
        max_length=2,
        default="RU",
        help_text=_("Country for numbers written without a country code (ISO 3166, e.g. RU)."),
    )
    time_zone = models.CharField(_("time zone"), max_length=64, default="Europe/Moscow")
    mask_visible_digits = models.PositiveSmallIntegerField(
        _("digits shown in masked numbers"), default=2
    )
    duplicate_window_hours = models.PositiveIntegerField(
        _("duplicate window, hours"), default=default_duplicate_window
    )
    thank_you_url = models.URLField(_("thank-you page for form leads"), blank=True)
    order_seq = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    """What a member is; each role presets the capability flags."""

    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    SUPERVISOR = "supervisor", _("Supervisor")
    OPERATOR = "operator", _("Operator")
    TRAINEE = "trainee", _("Trainee")


# The capability flags, in the order pages show them. An owner can change any of them per
# member; the role only chooses the starting values.
CAPABILITIES: dict[str, Any] = {
    "can_see_phones": _("May see phone numbers"),
    "can_view_all_orders": _("May list and search all orders"),
    "can_edit_orders": _("May edit orders"),
    "can_manage_members": _("May manage members"),
    "can_manage_project": _("May change project settings, statuses and products"),
    "can_manage_api_keys": _("May manage API keys"),
    "can_view_audit": _("May view the audit trail"),
    "can_export": _("May export"),
    "can_listen_recordings": _("May listen to recordings"),
}

ROLE_PRESETS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(CAPABILITIES),
    Role.ADMIN: frozenset(CAPABILITIES) - {"can_see_phones"},
    Role.SUPERVISOR: frozenset(
        {"can_view_all_orders", "can_edit_orders", "can_view_audit", "can_listen_recordings"}
    ),
    Role.OPERATOR: frozenset({"can_edit_orders"}),
    Role.TRAINEE: frozenset({"can_edit_orders"}),
}


class MembershipQuerySet(models.QuerySet["Membership"]):
    """Memberships, with the usual filters."""

    def active(self) -> MembershipQuerySet:
        """Active members of active users."""
        return self.filter(is_active=True, user__is_active=True)


class Membership(models.Model):
    """A user's place in a project: a role and the capability flags it grants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    is_active = models.BooleanField(_("active"), default=True)
    can_see_phones = models.BooleanField(CAPABILITIES["can_see_phones"], default=False)
    can_view_all_orders = models.BooleanField(CAPABILITIES["can_view_all_orders"], default=False)
    can_edit_orders = models.BooleanField(CAPABILITIES["can_edit_orders"], default=False)
    can_manage_members = models.BooleanField(CAPABILITIES["can_manage_members"], default=False)
    can_manage_project = models.BooleanField(CAPABILITIES["can_manage_project"], default=False)
    can_manage_api_keys = models.BooleanField(CAPABILITIES["can_manage_api_keys"], default=False)
    can_view_audit = models.BooleanField(CAPABILITIES["can_view_audit"], default=False)
    can_export = models.BooleanField(CAPABILITIES["can_export"], default=False)
    can_listen_recordings = models.BooleanField(
        CAPABILITIES["can_listen_recordings"], default=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="one_membership_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.project} ({self.role})"

    def capabilities(self) -> dict[str, bool]:
        """Every capability flag with its current value."""
        return {name: bool(getattr(self, name)) for name in CAPABILITIES}


def access_membership(user: Any, project_slug: str) -> Membership:
    """The user's active membership in the project; 404 when absent or not theirs alike."""
    if not getattr(user, "is_authenticated", False):
        raise Http404
    try:
        return (
            Membership.objects.active()
            .select_related("project", "user")
            .get(user=user, project__slug=project_slug)
        )
    except Membership.DoesNotExist:
        raise Http404 from None


def hash_api_key(secret: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a slow hash would add nothing but latency."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    """API keys, with the usual filters."""

    def usable(self) -> QuerySet[ApiKey]:
        """Keys that are not revoked."""
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A project's key for landing pages and integrations; the secret is stored hashed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    secret_hash = models.CharField(max_length=64)
    can_create_leads = models.BooleanField(_("may post leads"), default=True)
    can_read_orders = models.BooleanField(_("may read orders"), default=False)
    can_update_orders = models.BooleanField(_("may change order statuses"), default=False)
    # Who did what from which address: more than an order integration needs to see.
    can_read_audit = models.BooleanField(_("may read the audit trail"), default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
