"""Background tasks of the guard (run by `callvault worker`): making large exports, and
expiring the ones nobody downloaded."""

from __future__ import annotations

import logging

from django.utils import timezone
from django_tasks import task

from callvault.accounts.models import Membership
from callvault.guard.exports import expire_old_files, write_file
from callvault.guard.models import ExportJob

log = logging.getLogger(__name__)


@task()
def make_export(job_id: int) -> int:
    """Write a queued export's file; the number of rows written (0 if nothing was done).

    The job is claimed with a conditional UPDATE from queued to running, so a task run
    twice writes the file once. The member's rights are checked again: an owner who took
    the capability away in the meantime stops the export."""
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
    if member is None or (job.params.get("reveal") and not member.can_see_phones):
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
