"""`callvault worker` runs queued tasks through the database queue and through Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from callvault.orders.models import IdempotencyRecord
from callvault.orders.tasks import prune_idempotency_records


def test_prune_forgets_only_expired_idempotency_keys(settings, project, order):
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 48
    old = IdempotencyRecord.objects.create(project=project, key="old", fingerprint="x", order=order)
    IdempotencyRecord.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=49)
    )
    IdempotencyRecord.objects.create(project=project, key="fresh", fingerprint="x", order=order)
    assert prune_idempotency_records.call() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


SCRIPT = """
import django, os, sys
django.setup()
from django.core.management import call_command
from callvault.orders.tasks import prune_idempotency_records
if sys.argv[1] == "enqueue":
    call_command("migrate", verbosity=0)
    print(prune_idempotency_records.enqueue().id)
else:
    result = prune_idempotency_records.get_result(sys.argv[2])
    detail = result.errors[-1].traceback[-800:] if result.errors else ""
    print(result.status, result.return_value if result.status == "SUCCESSFUL" else detail)
"""


def run(data: Path, args: list[str], **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    clean.update(
        {
            "CALLVAULT_DATA_DIR": str(data),
            "CALLVAULT_DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "callvault.settings",
            **env,
        }
    )
    result = subprocess.run(
        [sys.executable, *args], env=clean, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize("queue", ["database", "redis"])
def test_the_worker_runs_an_enqueued_task(tmp_path, queue):
    env: dict[str, str] = {}
    if queue == "redis":
        if not redis_available():
            if os.environ.get("CALLVAULT_E2E_STRICT") == "1":
                pytest.fail("Redis is not answering on 127.0.0.1:6379")
            pytest.skip("Redis is not answering on 127.0.0.1:6379")
        env["CALLVAULT_REDIS_URL"] = f"redis://127.0.0.1:6379/{9 + os.getpid() % 6}"
    task_id = run(tmp_path, ["-c", SCRIPT, "enqueue"], **env).splitlines()[-1]
    assert "READY" in run(tmp_path, ["-c", SCRIPT, "status", task_id], **env)
    run(tmp_path, ["-m", "callvault.cli", "worker", "--once"], **env)
    assert run(tmp_path, ["-c", SCRIPT, "status", task_id], **env).startswith("SUCCESSFUL")
