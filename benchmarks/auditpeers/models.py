"""The same order-shaped table once per recorder, so each update costs the same without audit.

The columns are the ones an operator edits on a callvault order, plus the ids and the
version an update carries; foreign keys are plain integers so no recorder pays a lookup the
others do not. No migrations: `migrate --run-syncdb` creates the tables in the scratch database.
"""

from __future__ import annotations

from auditlog.registry import auditlog
from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords


class OrderShape(models.Model):
    """An order's editable columns (13, as the product's order card writes them)."""

    project_id = models.BigIntegerField()
    status_id = models.BigIntegerField()
    customer_name = models.CharField(max_length=200, blank=True)
    phone_mask = models.CharField(max_length=40, blank=True)
    customer_tz = models.CharField(max_length=64, blank=True)
    address = models.TextField(blank=True)
    source = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    next_call_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    assigned_to_id = models.BigIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"#{self.pk}"


class PlainOrder(OrderShape):
    """No audit at all: the baseline."""


class SimpleHistoryOrder(OrderShape):
    """Recorded by django-simple-history (a historical row per save, from post_save)."""

    history = HistoricalRecords()


class AuditlogOrder(OrderShape):
    """Recorded by django-auditlog (a LogEntry with a JSON diff, from pre/post_save)."""


auditlog.register(AuditlogOrder)


class CallvaultOrder(OrderShape):
    """Recorded by callvault's record_event; the bypass trigger is installed on its table."""


class CallvaultUntriggeredOrder(OrderShape):
    """Recorded by callvault's record_event, without the bypass trigger (for comparison)."""


# django-pghistory runs on PostgreSQL only; benchmarks.audit_settings installs it there.
if "pghistory" in settings.INSTALLED_APPS:
    import pghistory

    @pghistory.track()
    class PghOrder(OrderShape):
        """Recorded by django-pghistory (database triggers: a snapshot row per insert/update)."""
