"""The record: one row per action or read that matters, never updated or deleted."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ActorKind(models.TextChoices):
    """Who did it."""

    MEMBER = "member", _("Member")
    API_KEY = "api_key", _("API key")
    SYSTEM = "system", _("System")
    PBX = "pbx", _("PBX")
    AGENT = "agent", _("Monitoring agent")
    SUPPORT = "support", _("Support access")
    ANONYMOUS = "anonymous", _("Anonymous")


class AuditEvent(models.Model):
    """An action with its actor, context and before -> after changes.

    Nothing here is a foreign key: the actor's and object's names are kept as text so the
    record outlives deleted users, keys and orders, and `audit` depends on no domain app.
    """

    created_at = models.DateTimeField(_("time"), db_index=True)
    # Searched through the composite indexes below, which all start with the project.
    project_id = models.BigIntegerField(_("project"), null=True)
    actor_kind = models.CharField(_("actor kind"), max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(_("actor id"), max_length=64, blank=True)
    actor_name = models.CharField(_("actor"), max_length=200, blank=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    extra = models.JSONField(_("details"), default=dict, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=400, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            models.Index(
                fields=["project_id", "object_type", "object_id", "id"], name="audit_object_idx"
            ),
            models.Index(
                fields=["project_id", "actor_kind", "actor_id", "id"], name="audit_actor_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"
