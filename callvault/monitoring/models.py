"""Monitoring: each project's policy, enrolment codes, devices, activity spans, screenshots."""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import Membership, Project


class ScreenshotFormat(models.TextChoices):
    """How the agent compresses a screenshot."""

    WEBP = "webp", "WebP"
    JPEG = "jpeg", "JPEG"


class MonitoringPolicy(models.Model):
    """What the agents of one project collect and how often; one row per project, sent to
    every agent of the project and shown to its operators."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="monitoring_policy"
    )
    heartbeat_seconds = models.PositiveSmallIntegerField(_("heartbeat every, seconds"), default=5)
    idle_seconds = models.PositiveSmallIntegerField(
        _("idle after no input for, seconds"), default=120
    )
    window_titles = models.BooleanField(_("collect programs and window titles"), default=True)
    # Regular expressions (Python syntax, checked when saved); matches in window titles are
    # replaced on the operator's PC before anything is sent, and again on arrival.
    redact_patterns = models.JSONField(_("redaction patterns"), default=list, blank=True)
    # Screenshots: between min and max at random moments in every interval; 0 and 0 = none.
    screenshots_min = models.PositiveSmallIntegerField(
        _("screenshots per interval, at least"), default=1
    )
    screenshots_max = models.PositiveSmallIntegerField(
        _("screenshots per interval, at most"), default=3
    )
    screenshot_interval_seconds = models.PositiveIntegerField(
        _("screenshot interval, seconds"), default=600
    )
    screenshot_scale = models.FloatField(_("screenshot scale (0.1 to 1)"), default=0.5)
    screenshot_blur = models.PositiveSmallIntegerField(
        _("screenshot blur radius, pixels"), default=0
    )
    screenshot_format = models.CharField(
        _("screenshot format"),
        max_length=4,
        choices=ScreenshotFormat.choices,
        default=ScreenshotFormat.WEBP,
    )
    screenshot_quality = models.PositiveSmallIntegerField(
        _("screenshot quality (10 to 95)"), default=60
    )
    max_screenshot_bytes = models.PositiveIntegerField(
        _("largest screenshot accepted, bytes"), default=2_000_000
    )
    retention_days = models.PositiveSmallIntegerField(_("keep screenshots for, days"), default=30)
    # Nothing is collected outside the working hours when they are on.
    working_hours = models.BooleanField(_("collect only during working hours"), default=False)
    work_zone = models.CharField(
        _("working hours time zone (empty: the project's)"), max_length=64, blank=True
    )
    work_days = models.CharField(
        _("working days (1 = Monday ... 7 = Sunday)"), max_length=7, default="12345"
    )
    work_start = models.TimeField(_("working day starts"), default=time(9, 0))
    work_end = models.TimeField(_("working day ends"), default=time(18, 0))
    # Bumped by every change; agents see it in X-Policy-Version and re-read the policy.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name = _("monitoring policy")
        verbose_name_plural = _("monitoring policies")

    def __str__(self) -> str:
        return f"monitoring policy of {self.project}"


class EnrolmentCode(models.Model):
    """A one-time code an admin makes for a member's PC; only its keyed hash is kept."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="enrolment_codes")
    membership = models.ForeignKey(
        Membership, on_delete=models.CASCADE, related_name="enrolment_codes"
    )
    code_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("enrolment code")
        verbose_name_plural = _("enrolment codes")

    def __str__(self) -> str:
        return f"enrolment code {self.pk} for {self.membership_id}"


class Platform(models.TextChoices):
    """The operating systems the agent runs on."""

    LINUX_X11 = "linux-x11", "Linux (X11)"
    WINDOWS = "windows", "Windows"
    MACOS = "macos", "macOS"


class Device(models.Model):
    """A member's PC running the agent, known by its token (stored as SHA-256)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="devices")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="devices")
    hostname = models.CharField(_("host name"), max_length=200)
    platform = models.CharField(_("platform"), max_length=12, choices=Platform.choices)
    agent_version = models.CharField(_("agent version"), max_length=40)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    # Bookkeeping the agent's requests move (not recorded: docs/monitoring.md).
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    last_seq = models.BigIntegerField(default=0)
    # When a batch of heartbeats was last accepted: the silence alert counts from this, not
    # from "last seen", which policy reads and screenshots move too (an agent whose clock is
    # far ahead is seen but has every heartbeat refused).
    last_heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # The "agent offline while working" alert fires once per silence: it is set when the
    # alert is raised and the device must be seen again before the next one.
    silence_alerted_at = models.DateTimeField(null=True, blank=True)
    # The device's newest span, which the next heartbeats may extend: read with the lock
    # on this row, so a batch needs no query of its own to find it.
    open_span = models.ForeignKey(
        "ActivitySpan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("device")
        verbose_name_plural = _("devices")

    def __str__(self) -> str:
        return self.hostname


class ActivityState(models.TextChoices):
    """What the agent saw at its heartbeat."""

    ACTIVE = "active", _("Active")
    IDLE = "idle", _("Idle")
    LOCKED = "locked", _("Locked")


class ActivitySpan(models.Model):
    """Consecutive heartbeats of one device with the same state, program and title."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="spans")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=ActivityState.choices)
    app = models.CharField(max_length=200, null=True, blank=True)
    title = models.CharField(max_length=500, null=True, blank=True)

    class Meta:
        verbose_name = _("activity span")
        verbose_name_plural = _("activity spans")
        indexes = [
            # The timeline: one member's day.
            models.Index(fields=["project", "membership", "started_at"], name="span_timeline"),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.started_at:%H:%M:%S}-{self.ended_at:%H:%M:%S}"


class Screenshot(models.Model):
    """A screenshot an agent sent, sealed at rest with a sealed thumbnail beside it."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="screenshots")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    taken_at = models.DateTimeField()
    # The agent's own id for it: a retry with the same id stores nothing new.
    client_id = models.UUIDField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=20)
    size = models.PositiveIntegerField()
    storage_name = models.CharField(max_length=200, blank=True)
    thumb_storage_name = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("screenshot")
        verbose_name_plural = _("screenshots")
        constraints = [
            models.UniqueConstraint(fields=["device", "client_id"], name="screenshot_once")
        ]
        indexes = [
            models.Index(fields=["project", "membership", "taken_at"], name="screenshot_timeline"),
            models.Index(fields=["project", "taken_at"], name="screenshot_retention"),
        ]

    def __str__(self) -> str:
        return f"screenshot {self.pk} at {self.taken_at:%Y-%m-%d %H:%M:%S}"
