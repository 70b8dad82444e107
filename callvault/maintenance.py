"""Periodic housekeeping that `callvault worker` enqueues on start and then every interval.

Each task is idempotent, so several workers enqueueing the same one do no harm.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


def periodic_tasks() -> list[Any]:
    """The tasks to run regularly (imported late: apps must be ready)."""
    from callvault.orders.tasks import prune_idempotency_records

    return [prune_idempotency_records]


def enqueue_maintenance() -> None:
    """Queue one run of every periodic task."""
    for task in periodic_tasks():
        result = task.enqueue()
        log.info("enqueued %s as %s", task.name, result.id)


def start_scheduler(interval_seconds: int) -> threading.Event:
    """Enqueue maintenance every interval in a daemon thread; set the event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        from django.db import close_old_connections

        while not stop.wait(interval_seconds):
            try:
                enqueue_maintenance()
            except Exception:
                log.exception("could not enqueue maintenance tasks")
            finally:
                close_old_connections()

    threading.Thread(target=loop, name="callvault-maintenance", daemon=True).start()
    return stop
