"""Background tasks of the guard (run by `callvault worker`): making large exports, and
expiring the ones nobody downloaded."""

from __future__ import annotations

import logging

from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router
from django.utils import timezone
from django_tasks import task

from callvault.accounts.models import Membership
from callvault.guard.exports import expire_old_files, still_allowed, write_file
from callvault.guard.models import ExportJob

log = logging.getLogger(__name__)


@task()
def make_export(job_id: int) -> int:
    """Write a queued export's file; the number of rows written (0 if nothing was done).

    The job is claimed with a conditional UPDATE from queued to running, so a task run
    twice writes the file once. The member's rights are checked again: an owner who took
    the capability, the kind's right or the numbers away in the meantime stops the export
    (and the download checks them once more)."""
    claimed = ExportJob.objects.filter(pk=job_id, state=ExportJob.State.QUEUED).update(
        state=ExportJob.State.RUNNING
    )
    if not claimed:
        return 0
    job = ExportJob.objects.get(pk=job_id)
    member = (
        None
        if job.user_id is None
        else (
            Membership.objects.active()
            .select_related("project", "user")
            .filter(project_id=job.project_id, user_id=job.user_id, can_export=True)
            .first()
        )
    )
    if member is None or not still_allowed(job, member):
        _fail(job, "the member may no longer make this export")
        return 0
    try:
        name, rows = write_file(job, member)
    except Exception:
        # The message stays generic: an exception text could quote a row.
        log.exception("export %s failed", job.pk)
        _fail(job, "the file could not be written")
        return 0
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.READY, file_name=name, row_count=rows, finished_at=timezone.now()
    )
    return rows


def _fail(job: ExportJob, error: str) -> None:
    ExportJob.objects.filter(pk=job.pk).update(
        state=ExportJob.State.FAILED, error=error, finished_at=timezone.now()
    )


@task()
def expire_exports() -> int:
    """Expire exports nobody downloaded within a day and delete their files (maintenance)."""
    return expire_old_files()


@task()
def purge_expired_cache_rows() -> int:
    """Delete the database cache's expired rows (maintenance); the number deleted.

    Django's DatabaseCache deletes expired rows only when it culls, so the quota counters'
    past windows would pile up toward MAX_ENTRIES (and a cull then also drops live ones).
    Nothing to do when the cache is Redis (it expires keys itself)."""
    backend = caches["default"]
    if not isinstance(backend, DatabaseCache):
        return 0
    db = router.db_for_write(backend.cache_model_class)
    connection = connections[db]
    table = connection.ops.quote_name(backend._table)  # type: ignore[attr-defined]
    expires = connection.ops.quote_name("expires")
    now = connection.ops.adapt_datetimefield_value(timezone.now().replace(microsecond=0))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {expires} < %s", [now])  # noqa: S608
        return int(cursor.rowcount)
