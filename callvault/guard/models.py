"""Against bulk leaks: the project's guard settings, quotas, suspensions, alert rules,
export jobs and each member's usual pace."""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import ApiKey, Membership, Project, Role


class GuardSettings(models.Model):
    """A project's leak controls; one row per project."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="guard")
    # A hard breach of a quota suspends the member until an owner has looked (quotas.py).
    suspend_on_breach = models.BooleanField(
        _("suspend a member who keeps going past a quota"), default=False
    )
    watermark = models.BooleanField(
        _("faint watermark with the member's name and time on operators' pages"), default=False
    )
    # The call center's own hours, for the "access outside working hours" alert (the
    # project's calling hours are the customers').
    work_starts = models.TimeField(_("working day starts"), default=time(8, 0))
    work_ends = models.TimeField(_("working day ends"), default=time(21, 0))
    work_days = models.CharField(
        _("working days (1 = Monday ... 7 = Sunday)"), max_length=7, default="1234567"
    )
    webhook_url = models.URLField(_("alert webhook URL"), max_length=500, blank=True)
    # The HMAC key signing webhook bodies, sealed with the vault's key ring.
    webhook_secret_sealed = models.TextField(blank=True)
    # Larger exports run in the background and are downloaded once (exports.py).
    background_export_rows = models.PositiveIntegerField(
        _("exports larger than this run in the background"), default=2000
    )

    class Meta:
        verbose_name = _("leak controls")
        verbose_name_plural = _("leak controls")

    def __str__(self) -> str:
        return f"leak controls of {self.project}"


class QuotaKind(models.TextChoices):
    """What a quota counts, and over which period."""

    CARD_OPEN = "card_open", _("Order cards opened per hour")
    REVEAL = "reveal", _("Numbers revealed per day")
    CALL = "call", _("Calls per hour")
    SEARCH = "search", _("Searches per hour")
    API_READ = "api_read", _("API reads per key per minute")


class QuotaRule(models.Model):
    """A limit: for a role, for one member (overrides the role's), or for one API key."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quota_rules")
    kind = models.CharField(_("what"), max_length=20, choices=QuotaKind.choices)
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, blank=True)
    membership = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_rules"
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_rules"
    )
    limit = models.PositiveIntegerField(_("limit"))

    class Meta:
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")

    def __str__(self) -> str:
        return f"{self.kind} <= {self.limit}"


class Suspension(models.Model):
    """A member stopped by a hard quota breach until an owner reviews it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="suspensions")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="suspensions")
    reason = models.CharField(_("reason"), max_length=300)
    started_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("suspension")
        verbose_name_plural = _("suspensions")

    def __str__(self) -> str:
        return f"suspension of {self.membership_id}"


class AlertKind(models.TextChoices):
    """The alert rules an owner can tune."""

    CARDS_BURST = "cards_burst", _("Many order cards in a short time")
    REVEALS_BURST = "reveals_burst", _("Many numbers revealed in a short time")
    EXPORTS_BURST = "exports_burst", _("Many exports in a short time")
    OUTSIDE_HOURS = "outside_hours", _("Access outside working hours")
    ANOMALY = "anomaly", _("Far above the member's usual pace")
    # callvault/monitoring/silence.py: threshold = minutes the agent has been silent,
    # window = minutes in which the member did something in callvault.
    AGENT_SILENT = "agent_silent", _("Agent offline while working")


class AlertRule(models.Model):
    """An owner's threshold for one kind of alert."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="alert_rules")
    kind = models.CharField(_("alert"), max_length=20, choices=AlertKind.choices)
    threshold = models.PositiveIntegerField(_("threshold"))
    window_minutes = models.PositiveIntegerField(_("within, minutes"), default=10)
    enabled = models.BooleanField(_("on"), default=True)

    class Meta:
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")
        constraints = [
            models.UniqueConstraint(fields=["project", "kind"], name="one_alert_rule_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} >= {self.threshold}"


class ExportJob(models.Model):
    """One export: who asked, why, what it held; large ones are made in the background and
    downloaded once."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Being made")
        READY = "ready", _("Ready to download")
        DOWNLOADED = "downloaded", _("Downloaded")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_jobs")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20)  # orders, audit, report
    reason = models.CharField(_("reason"), max_length=300)
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")

    def __str__(self) -> str:
        return f"export {self.pk} ({self.kind})"


class MemberBaseline(models.Model):
    """A member's usual hourly count of something (card opens, reveals) over recent weeks."""

    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="baselines")
    kind = models.CharField(max_length=20)
    hours = models.PositiveIntegerField()  # working hours observed
    mean = models.FloatField()
    stdev = models.FloatField()
    p95 = models.FloatField()
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name = _("usual pace")
        verbose_name_plural = _("usual paces")
        constraints = [
            models.UniqueConstraint(fields=["membership", "kind"], name="one_baseline_per_kind")
        ]

    def __str__(self) -> str:
        return f"baseline {self.kind} of {self.membership_id}"
