"""Background tasks of the orders app (run by `callvault worker`)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from callvault.orders.models import IdempotencyRecord


@task()
def prune_idempotency_records() -> int:
    """Forget Idempotency-Keys older than the TTL: a retry that late is treated as a new lead.

    These rows are bookkeeping, not order data, so they are deleted in bulk without events.
    """
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
