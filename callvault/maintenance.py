"""Periodic housekeeping that `callvault worker` enqueues on start and then every interval,
the watches it enqueues every few minutes, and the audit sealer it runs in a thread of its own.

Each task is idempotent, so several workers enqueueing the same one do no harm; several
sealers take turns on a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def periodic_tasks() -> list[Any]:
    """The tasks to run regularly (imported late: apps must be ready)."""
    from callvault.guard.baseline import compute_baselines
    from callvault.guard.tasks import expire_exports, purge_expired_cache_rows
    from callvault.monitoring.tasks import purge_old_screenshots
    from callvault.orders.tasks import prune_idempotency_records
    from callvault.telephony.recordings import purge_old_recordings

    return [
        prune_idempotency_records,
        compute_baselines,
        expire_exports,
        purge_expired_cache_rows,
        purge_old_recordings,
        purge_old_screenshots,
    ]


def watch_tasks() -> list[Any]:
    """Checks whose answer is only useful within minutes ("agent offline while working"):
    enqueued every CALLVAULT_WATCH_INTERVAL seconds, not with the hourly housekeeping."""
    from callvault.monitoring.tasks import check_agent_silence

    return [check_agent_silence]


def enqueue_maintenance(tasks: Callable[[], list[Any]] | None = None) -> None:
    """Queue one run of every periodic task (or of the given list's tasks)."""
    for task in (tasks or periodic_tasks)():
        result = task.enqueue()
        log.info("enqueued %s as %s", task.name, result.id)


def start_scheduler(
    interval_seconds: int, tasks: Callable[[], list[Any]] | None = None
) -> threading.Event:
    """Enqueue the tasks (maintenance by default) every interval in a daemon thread; set the
    event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        from django.db import close_old_connections

        while not stop.wait(interval_seconds):
            try:
                enqueue_maintenance(tasks)
            except Exception:
                log.exception("could not enqueue periodic tasks")
            finally:
                close_old_connections()

    name = f"callvault-{getattr(tasks, '__name__', 'maintenance')}"
    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop


class AuditSealer:
    """Seals the audit chain every few seconds; signs checkpoints and archives less often."""

    def __init__(self) -> None:
        # None: due at the first run (the monotonic clock may start near zero).
        self.last_checkpoint: float | None = None
        self.last_archive: float | None = None

    def run_once(self) -> None:
        """One round: seal, and checkpoint or archive when their interval has passed."""
        from django.conf import settings

        from callvault.audit.chain import seal_pending

        sealed = seal_pending()
        if sealed:
            log.debug("sealed %d audit events", sealed)
        now = time.monotonic()
        # Each step on its own: a missing signing key must not stop the sealing.
        if _due(self.last_checkpoint, now, settings.AUDIT_CHECKPOINT_INTERVAL):
            self.last_checkpoint = now
            _logged(export_checkpoint)
        if _due(self.last_archive, now, settings.AUDIT_ARCHIVE_INTERVAL):
            self.last_archive = now
            _logged(archive_expired_events)


def _due(last: float | None, now: float, interval: int) -> bool:
    return last is None or now - last >= interval


def _logged(step: Any) -> None:
    try:
        step()
    except Exception:
        log.exception("audit %s failed", step.__name__)


def export_checkpoint() -> None:
    """Sign the chain heads, write checkpoint-latest.json and post it if a URL is set."""
    from django.conf import settings

    from callvault.audit import checkpoints

    checkpoints.write_checkpoints()
    document = checkpoints.export_document()
    checkpoints.save_document(document, settings.AUDIT_CHECKPOINT_DIR / "checkpoint-latest.json")
    if settings.AUDIT_CHECKPOINT_URL:
        try:
            checkpoints.post_document(document, settings.AUDIT_CHECKPOINT_URL)
        except (OSError, ValueError):
            log.exception("could not post the audit checkpoint")


def archive_expired_events() -> None:
    """Archive and prune the audit events of projects past their retention."""
    from django.conf import settings

    from callvault.audit.context import system_run
    from callvault.audit.retention import archive_expired

    with system_run("audit archive"):
        for item in archive_expired(settings.AUDIT_ARCHIVE_DIR):
            log.info("archived %s", item.record)


def start_sealer(interval_seconds: int) -> threading.Event:
    """Run the audit sealer every interval in a daemon thread; set the event to stop it."""
    stop = threading.Event()
    sealer = AuditSealer()

    def loop() -> None:
        from django.db import close_old_connections

        while True:
            try:
                sealer.run_once()
            except Exception:
                log.exception("audit sealer run failed")
            finally:
                close_old_connections()
            if stop.wait(interval_seconds):
                return

    threading.Thread(target=loop, name="callvault-audit-sealer", daemon=True).start()
    return stop
