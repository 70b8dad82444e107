"""Telephony: a project's provider settings, its PBXs, operators' SIP accounts, calls, one-time
call tokens, recordings and call reviews.

No model here holds a phone number: the number stays sealed on the order and is opened only on
the way to the PBX (providers and the token lookup).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import Membership, Project
from callvault.orders.models import Order


class ProviderKind(models.TextChoices):
    """How a project's calls are started (telephony/providers/)."""

    NONE = "none", _("No telephony")
    SIP_TOKEN = "sip_token", _("SIP token dialing (softphone dials a one-time token)")
    AMI = "ami", _("Asterisk AMI Originate")
    CLOUD = "cloud", _("Cloud PBX callback over HTTP")


class TelephonySettings(models.Model):
    """A project's telephony: which provider, its settings, recordings and reviews."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="telephony")
    provider = models.CharField(
        _("provider"), max_length=20, choices=ProviderKind.choices, default=ProviderKind.NONE
    )
    # SIP token dialing: the domain the softphone dials the token at (sip:ct-...@domain).
    sip_domain = models.CharField(_("SIP domain of the proxy"), max_length=200, blank=True)
    token_ttl_seconds = models.PositiveIntegerField(_("call token lifetime (seconds)"), default=60)
    # Who may press "Call" beyond the card's own access check.
    trainees_may_call = models.BooleanField(_("trainees may call"), default=True)
    # The provider's secret (the AMI login secret, or the cloud PBX's signing secret), sealed
    # with the vault's key ring. One column for whichever provider is in use: key rotation
    # re-seals a table's secret column under one audited name (audit/bypass.py), and a
    # project calls through one provider at a time (changing it clears the secret).
    secret_sealed = models.TextField(blank=True)
    # Asterisk AMI: where to log in and what to originate.
    ami_host = models.CharField(_("AMI host"), max_length=200, blank=True)
    ami_port = models.PositiveIntegerField(_("AMI port"), default=5038)
    ami_username = models.CharField(_("AMI user"), max_length=100, blank=True)
    ami_context = models.CharField(_("dialplan context for customers"), max_length=100, blank=True)
    ami_channel = models.CharField(
        _("operator channel template"), max_length=100, default="PJSIP/{extension}"
    )
    # Cloud PBX callback: one HTTP request per call, signed with the provider's secret.
    cloud_url = models.URLField(_("callback URL"), max_length=500, blank=True)
    cloud_headers = models.JSONField(_("extra headers"), default=dict, blank=True)
    cloud_body_template = models.TextField(_("body template (JSON)"), blank=True)
    # Inbound calls from numbers the project does not know.
    unknown_caller_name = models.CharField(
        _("name shown for unknown callers"), max_length=100, default="New caller"
    )
    create_order_for_unknown = models.BooleanField(
        _("create an order for unknown callers"), default=False
    )
    # Recordings and their review.
    recording_retention_days = models.PositiveIntegerField(
        _("keep recordings for (days)"), default=180
    )
    review_checklist = models.TextField(
        _("call review checklist (one item per line)"),
        blank=True,
        default="Greeted the customer\nConfirmed the order\nOffered an upsell\nSaid goodbye",
    )

    class Meta:
        verbose_name = _("telephony settings")
        verbose_name_plural = _("telephony settings")

    def __str__(self) -> str:
        return f"telephony of {self.project}"


class Pbx(models.Model):
    """A PBX or SIP proxy allowed to ask callvault about calls; its secret is stored hashed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pbxs")
    name = models.CharField(_("name"), max_length=100)
    # Shown in lists so an owner can tell secrets apart; the rest is only in the hash.
    prefix = models.CharField(max_length=12, unique=True)
    secret_hash = models.CharField(max_length=64)
    # Where the PBX may call from: CIDRs, one per line, at least one (setup_actions); a PBX
    # saved without any (before they were required) is refused.
    networks = models.TextField(_("allowed addresses (CIDR, one per line)"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("PBX")
        verbose_name_plural = _("PBXs")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class SipAccount(models.Model):
    """An operator's softphone account on the reference SIP proxy (digest auth by HA1)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sip_accounts")
    membership = models.OneToOneField(
        Membership, on_delete=models.CASCADE, related_name="sip_account"
    )
    # The SIP user name and the extension an originate rings; digits only.
    username = models.CharField(_("SIP user"), max_length=32, unique=True)
    realm = models.CharField(_("realm"), max_length=200)
    # MD5(username:realm:password), what the proxy's auth_db checks; the password is shown once.
    ha1 = models.CharField(max_length=32)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("SIP account")
        verbose_name_plural = _("SIP accounts")

    def __str__(self) -> str:
        return f"sip {self.username}"


class CallState(models.TextChoices):
    """Where a call is; the last five are final."""

    NEW = "new", _("New")
    DIALING = "dialing", _("Dialing")
    RINGING = "ringing", _("Ringing")
    ANSWERED = "answered", _("Answered")
    ENDED = "ended", _("Ended")
    BUSY = "busy", _("Busy")
    NO_ANSWER = "no_answer", _("No answer")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed")


FINAL_STATES = frozenset(
    {CallState.ENDED, CallState.BUSY, CallState.NO_ANSWER, CallState.CANCELLED, CallState.FAILED}
)


class CallDirection(models.TextChoices):
    """Who called whom."""

    OUTBOUND = "out", _("Outgoing")
    INBOUND = "in", _("Incoming")


class Call(models.Model):
    """One call about an order: who, through which provider, how it went."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="calls")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="calls",
    )
    # The operator's name as text: the call's history outlives the user.
    member_name = models.CharField(max_length=150, blank=True)
    provider = models.CharField(max_length=20, choices=ProviderKind.choices)
    direction = models.CharField(
        max_length=3, choices=CallDirection.choices, default=CallDirection.OUTBOUND
    )
    state = models.CharField(max_length=20, choices=CallState.choices, default=CallState.NEW)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Talk time in seconds (from answer to end), as the PBX reports it or as computed.
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # The PBX's short cause ("busy", "no-answer", a SIP code): never a carrier's free text.
    result = models.CharField(max_length=100, blank=True)
    # The PBX's own id for the call (AMI ActionID/Uniqueid, a cloud PBX's call id).
    external_id = models.CharField(max_length=200, blank=True, db_index=True)

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        indexes = [models.Index(fields=["project", "order", "-created_at"], name="call_order_idx")]

    def __str__(self) -> str:
        return f"call {self.pk}"


class CallToken(models.Model):
    """A one-time token the operator's softphone dials instead of the number.

    Bound to the call (and so to the order) and to the operator's SIP account; stored as a
    SHA-256 hash; valid until `expires_at` and for one lookup.
    """

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="token")
    sip_account = models.ForeignKey(SipAccount, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("call token")
        verbose_name_plural = _("call tokens")

    def __str__(self) -> str:
        return f"token of call {self.call_id}"


class Recording(models.Model):
    """A call's recording, sealed at rest and named by the call id only."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="recording")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="recordings")
    # The storage name (recordings/<project id>/<call id>.sealed): no number, no name.
    storage_name = models.CharField(max_length=300)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("recording")
        verbose_name_plural = _("recordings")

    def __str__(self) -> str:
        return f"recording of call {self.call_id}"


class CallReview(models.Model):
    """A supervisor's quality review of a call: the checklist's answers and a comment."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="reviews")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="call_reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reviewer_name = models.CharField(max_length=150, blank=True)
    # {checklist item: true/false}, the items as they read when the review was written.
    checklist = models.JSONField(default=dict)
    score = models.PositiveSmallIntegerField(_("score (percent)"))
    comment = models.TextField(_("comment"), blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("call review")
        verbose_name_plural = _("call reviews")

    def __str__(self) -> str:
        return f"review {self.pk} of call {self.call_id}"
