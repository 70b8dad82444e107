"""The record: one row per action or read that matters, never updated or deleted."""

from __future__ import annotations

from typing import Any

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
    # A write that bypassed the application, found by the database's own triggers.
    UNATTRIBUTED = "unattributed", _("Unattributed (outside the application)")


class TransactionId(models.Func):
    """The top-level transaction id on PostgreSQL (also inside savepoints); NULL on SQLite.

    Stamped on every event by the column default, so the database triggers that catch
    writes bypassing the application can ask "did the application record this object in
    this same transaction?" without a round trip from Python.
    """

    template = "txid_current()"
    output_field = models.BigIntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return "NULL", []


# What an event holds, as `record_event` writes it and the chain hashes it (with the id):
# one list, so a column added to the record is also covered by the hash.
RECORDED_COLUMNS = (
    "created_at",
    "project_id",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "extra",
    "ip",
    "user_agent",
    "request_id",
)


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
    txid = models.BigIntegerField(null=True, editable=False, db_default=TransactionId())

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


class PendingChange(models.Model):
    """A row change seen by an SQLite trigger and not yet claimed by an application event.

    SQLite has neither deferred triggers nor transaction ids, so its triggers park every
    change to an audited table here; inserting an application event removes the rows of
    its object (a trigger, parked.SQLITE_CLAIM_SQL), and the sealer turns whatever is left
    (a raw-SQL write, a forgotten `QuerySet.update()`) into an "unattributed" event.
    PostgreSQL does not use this table: its deferred triggers check the event table directly.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    table_name = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)
    project_id = models.BigIntegerField(null=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_pending_obj_idx")]

    def __str__(self) -> str:
        return f"{self.operation} {self.table_name} {self.object_id}"


# The hash chain (callvault/audit/chain.py, docs/audit.md). Events are never updated, so
# what the sealer learns about them lives in these tables, keyed by the chain: the event's
# project id, or 0 for events of no project (the "system" chain).


class ChainLink(models.Model):
    """One sealed event's place in its chain: seq, content hash and the running chain hash."""

    chain_key = models.BigIntegerField()
    seq = models.BigIntegerField()
    event_id = models.BigIntegerField(unique=True)
    content_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_key", "seq"], name="audit_link_chain_seq_uniq")
        ]

    def __str__(self) -> str:
        return f"chain {self.chain_key} #{self.seq}: event {self.event_id}"


class ChainHead(models.Model):
    """The last sealed link of a chain; rewritten by the sealer, trusted by nobody."""

    chain_key = models.BigIntegerField(unique=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    # The highest event id sealed into this chain; the largest over all heads is the
    # sealer's watermark.
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain {self.chain_key} at #{self.seq}"


class Checkpoint(models.Model):
    """A chain head signed with the audit signing key (Ed25519), so a cut tail shows."""

    chain_key = models.BigIntegerField()
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_fingerprint = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        indexes = [models.Index(fields=["chain_key", "seq"], name="audit_checkpoint_seq_idx")]

    def __str__(self) -> str:
        return f"checkpoint chain {self.chain_key} #{self.seq}"


class PruneRecord(models.Model):
    """A signed record that seqs first..last of a chain went to an archive file and were pruned."""

    chain_key = models.BigIntegerField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    # The chain hash before first_seq and at last_seq: verify resumes the chain from the latter.
    prev_hash = models.CharField(max_length=64)
    head_hash = models.CharField(max_length=64)
    event_count = models.BigIntegerField()
    archive_name = models.CharField(max_length=255)
    archive_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_fingerprint = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_key", "last_seq"], name="audit_prune_chain_seq_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"pruned chain {self.chain_key} #{self.first_seq}-{self.last_seq}"


class AuditRetention(models.Model):
    """How many days a project keeps its audit events before they are archived (0: forever)."""

    project_id = models.BigIntegerField(unique=True)
    keep_days = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"project {self.project_id}: {self.keep_days} days"
