"""Who may enter: users, projects, memberships with roles and capabilities, API keys."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractUser
from django.db import models, transaction
from django.http import Http404
from django.utils import timezone
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
    # For the optional maximum password age (SecurityPolicy.password_max_age_days).
    password_changed_at = models.DateTimeField(null=True, blank=True)
    # A support account: enters projects only through an owner's SupportGrant.
    is_support = models.BooleanField(_("support account"), default=False)

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def check_password(self, raw_password: str) -> bool:
        """Django's check; the hash upgrade it makes on a correct password (a newer hasher,
        stronger parameters) is recorded with the write, in one transaction."""

        def setter(raw: str) -> None:
            from callvault.accounts.signals import record_password_rehash  # imports this module

            with transaction.atomic():
                self.set_password(raw)
                self._password = None  # an upgrade is not a password change
                self.save(update_fields=["password"])
                record_password_rehash(self, self.password.split("$", 1)[0])

        return check_password(raw_password, self.password, setter)

    def __str__(self) -> str:
        return self.get_full_name() or self.username


class ProjectQuerySet(models.QuerySet["Project"]):
    """Projects as seen by someone."""

    def visible_to(self, user: Any) -> ProjectQuerySet:
        """The projects the user is an active member of; for a support account, those its
        active grants open (a support account's memberships, should it have any, count for
        nothing: its way in is the owner's time-limited grant)."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        if getattr(user, "is_support", False):
            return self.filter(
                support_grants__user=user,
                support_grants__revoked_at__isnull=True,
                support_grants__expires_at__gt=timezone.now(),
            ).distinct()
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
    "can_view_activity": _("May view operators' activity and screenshots"),
}

ROLE_PRESETS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(CAPABILITIES),
    Role.ADMIN: frozenset(CAPABILITIES) - {"can_see_phones"},
    Role.SUPERVISOR: frozenset(
        {
            "can_view_all_orders",
            "can_edit_orders",
            "can_view_audit",
            "can_listen_recordings",
            "can_view_activity",
        }
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
    can_view_activity = models.BooleanField(CAPABILITIES["can_view_activity"], default=False)
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
    """The user's active membership in the project; 404 when absent or not theirs alike.

    A support account gets a transient (never saved) membership from its active grant
    instead, carrying the grant as `support_grant` (accounts/support.py)."""
    if not getattr(user, "is_authenticated", False):
        raise Http404
    if getattr(user, "is_support", False):
        from callvault.accounts.support import support_membership  # it imports this module

        return support_membership(user, project_slug)
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


# --- Who may enter: the project's security policy and what enforces it ----------------------


class TwoFactorRule(models.TextChoices):
    """When a role must use a second factor."""

    OPTIONAL = "optional", _("Optional")
    REQUIRED = "required", _("Required")
    OUTSIDE_ALLOWED_NETWORKS = "outside", _("Required outside the allowed networks")


# Idle time before the lock screen, by role: operators work at shared desks.
DEFAULT_IDLE_MINUTES: dict[str, int] = {
    Role.OWNER: 30,
    Role.ADMIN: 30,
    Role.SUPERVISOR: 30,
    Role.OPERATOR: 10,
    Role.TRAINEE: 10,
}


class SecurityPolicy(models.Model):
    """A project's rules for passwords, sessions and step-up; one row per project."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="security_policy"
    )
    password_min_length = models.PositiveSmallIntegerField(_("minimum password length"), default=12)
    # zxcvbn's score: 0 (guessable in seconds) .. 4 (very unguessable).
    password_min_score = models.PositiveSmallIntegerField(
        _("minimum password strength (0-4)"), default=3
    )
    # Off by default: NIST SP 800-63B advises against periodic changes without a reason.
    password_max_age_days = models.PositiveIntegerField(
        _("maximum password age, days"), null=True, blank=True
    )
    session_max_hours = models.PositiveSmallIntegerField(_("session lifetime, hours"), default=12)
    one_session_per_operator = models.BooleanField(
        _("one session per operator (a new login ends the old)"), default=False
    )
    end_session_on_ip_change = models.BooleanField(
        _("end a session when its address changes"), default=False
    )
    step_up_minutes = models.PositiveSmallIntegerField(
        _("re-authentication stays valid, minutes"), default=5
    )

    class Meta:
        verbose_name = _("security policy")
        verbose_name_plural = _("security policies")

    def __str__(self) -> str:
        return f"security policy of {self.project}"


class RolePolicy(models.Model):
    """What a project asks of one role: the second factor and the idle lock."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="role_policies")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    two_factor = models.CharField(
        _("second factor"),
        max_length=10,
        choices=TwoFactorRule.choices,
        default=TwoFactorRule.OPTIONAL,
    )
    idle_minutes = models.PositiveSmallIntegerField(_("lock after idle, minutes"), default=30)
    # "Operators only from the office, everyone else with a second factor": a role that need
    # not work from the project's networks may come from anywhere, and for it the networks
    # are where the "outside" second-factor rule does not ask for a code. A member's own
    # ranges always hold that member to the networks.
    networks_required = models.BooleanField(_("must work from the allowed networks"), default=True)

    class Meta:
        verbose_name = _("role policy")
        verbose_name_plural = _("role policies")
        constraints = [
            models.UniqueConstraint(fields=["project", "role"], name="one_policy_per_role")
        ]

    def __str__(self) -> str:
        return f"{self.role} @ {self.project}"


class AllowedNetwork(models.Model):
    """A CIDR range people (or one member, or one API key) may come from."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="allowed_networks")
    # Neither: the project's list. A membership: that member's own ranges, added to the
    # project's. An API key: that key's ranges, which replace the project's for the key.
    membership = models.ForeignKey(
        Membership,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="allowed_networks",
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="allowed_networks"
    )
    network = models.CharField(_("network (CIDR)"), max_length=49)
    label = models.CharField(_("label"), max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("allowed network")
        verbose_name_plural = _("allowed networks")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(membership__isnull=True) | models.Q(api_key__isnull=True),
                name="allowed_network_one_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.network} ({self.label})"


class MemberSession(models.Model):
    """A logged-in browser: where it came from, when it was last seen, how it ended."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="member_sessions"
    )
    session_key = models.CharField(max_length=40, unique=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    # Set by the idle lock; the password (or a second factor) clears it.
    locked_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=30, blank=True)

    class Meta:
        verbose_name = _("session")
        verbose_name_plural = _("sessions")
        indexes = [models.Index(fields=["user", "ended_at"], name="membersession_user_open")]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.user_id}"


class WebAuthnCredential(models.Model):
    """A passkey or security key registered by a user (public key only)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webauthn_credentials"
    )
    name = models.CharField(_("name"), max_length=100)
    credential_id = models.CharField(max_length=1400, unique=True)  # base64url
    public_key = models.BinaryField()
    sign_count = models.PositiveBigIntegerField(default=0)
    transports = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("passkey")
        verbose_name_plural = _("passkeys")

    def __str__(self) -> str:
        return self.name


class SupportGrant(models.Model):
    """Time-limited access of a support person to one project, instead of a password."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="support_grants")
    # A named support account (User.is_support), or the account made when a one-time link
    # is first opened.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="support_grants",
    )
    person = models.CharField(_("support person"), max_length=150)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    link_token_hash = models.CharField(max_length=64, blank=True)
    link_used_at = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(_("read-only"), default=True)
    may_see_phones = models.BooleanField(_("may see phone numbers"), default=False)
    expires_at = models.DateTimeField(_("expires"))
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("support access")
        verbose_name_plural = _("support access")

    def __str__(self) -> str:
        return f"support {self.person} @ {self.project}"


class SecurityNotice(models.Model):
    """Something an owner should know about: a refused address, a lockout, a new device."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="notices")
    # The person it is about, when it is about someone (a member's alerts, their timeline).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    kind = models.CharField(max_length=40)
    # Rendered at display time in the reader's language (accounts/notices.py).
    params = models.JSONField(default=dict)
    # The audit event behind the notice, for the link to the member's timeline.
    event_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("security notice")
        verbose_name_plural = _("security notices")
        indexes = [models.Index(fields=["project", "-created_at"], name="notice_project_recent")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.project_id}"
