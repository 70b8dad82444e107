"""Large exports: made by the worker into the data directory, downloaded once, expired."""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.guard.alerts import do_update_guard_settings, settings_for
from callvault.guard.models import ExportJob
from callvault.guard.tasks import expire_exports, make_export
from callvault.guard.tests.test_exports import URL, exporter, make_orders, may_export
from callvault.maintenance import periodic_tasks
from callvault.orders.tests.support import HttpsClient, assert_no_digits, login

Capture = Any  # pytest-django's django_capture_on_commit_callbacks


def download_url(job: ExportJob) -> str:
    return f"/p/alpha/guard/exports/{job.pk}/download/"


@pytest.fixture
def small_limit(project: Project) -> None:
    """Exports of more than two rows go to the background."""
    do_update_guard_settings(settings_for(project), background_export_rows=2)


def start(client: HttpsClient, capture: Capture, **data: str) -> ExportJob:
    """Ask for an export and let the worker (the immediate backend) make it."""
    with capture(execute=True):
        response = client.post(URL, {"kind": "orders", "reason": "quarterly audit", **data})
    assert response.status_code == 302
    return ExportJob.objects.order_by("-pk").first()  # type: ignore[return-value]


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def test_a_large_export_is_made_in_the_background_and_downloaded_once(
    owner: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    made = make_orders(project, 3, rng)
    client = exporter(owner)
    job = start(client, django_capture_on_commit_callbacks)
    assert (job.state, job.row_count) == (ExportJob.State.READY, 3)
    path = Path(settings.DATA_DIR) / "exports" / job.file_name
    assert path.is_file() and job.file_name.startswith(f"{job.pk}-")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    event = AuditEvent.objects.get(action="order.export")
    assert (event.object_id, event.extra["rows"], event.extra["background"]) == (
        str(job.pk),
        3,
        True,
    )
    page = client.get(URL).content.decode()
    assert download_url(job) in page

    first = client.get(download_url(job))
    assert first.status_code == 200
    assert "attachment" in first["Content-Disposition"]
    text = body(first)
    assert text.startswith("\ufeffExported by alice")
    assert text.count(f";{job.pk}\r\n") == 3  # each row ends with the export's id
    assert ";export_id\r\n" in text
    assert_no_digits(text, *(e164 for _, e164 in made))
    assert not path.exists()
    job.refresh_from_db()
    assert job.state == ExportJob.State.DOWNLOADED and job.downloaded_at is not None
    assert AuditEvent.objects.filter(action="export.download", object_id=str(job.pk)).exists()

    second = client.get(download_url(job))
    assert second.status_code == 410
    assert "already downloaded" in second.content.decode()
    assert download_url(job) not in client.get(URL).content.decode()


def test_only_the_maker_may_download_it(
    owner: Membership,
    supervisor: Membership,
    operator: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    may_export(supervisor, owner)
    make_orders(project, 3, rng)
    job = start(exporter(supervisor), django_capture_on_commit_callbacks)
    assert exporter(owner).get(download_url(job)).status_code == 404
    assert exporter(operator).get(download_url(job)).status_code == 404
    assert HttpsClient().get(download_url(job)).status_code == 302  # to the login
    job.refresh_from_db()
    assert job.state == ExportJob.State.READY


def test_the_download_needs_a_fresh_proof_too(
    owner: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    make_orders(project, 3, rng)
    job = start(exporter(owner), django_capture_on_commit_callbacks)
    response = login(owner).get(download_url(job))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/step-up/?next=")
    job.refresh_from_db()
    assert job.state == ExportJob.State.READY


def test_a_job_that_is_not_ready_is_refused_until_it_is(
    owner: Membership, project: Project, rng: random.Random, small_limit: None
) -> None:
    make_orders(project, 3, rng)
    client = exporter(owner)
    response = client.post(URL, {"kind": "orders", "reason": "quarterly audit"})
    assert response.status_code == 302  # queued; the worker has not run (no commit yet)
    job = ExportJob.objects.get()
    assert job.state == ExportJob.State.QUEUED
    assert client.get(download_url(job)).status_code == 409
    assert make_export.call(job.pk) == 3
    assert make_export.call(job.pk) == 0  # claimed once: a second run does nothing
    assert client.get(download_url(job)).status_code == 200


def test_a_member_who_lost_the_capability_gets_no_file(
    owner: Membership, supervisor: Membership, project: Project, rng: random.Random
) -> None:
    from callvault.accounts.actions import do_set_capabilities

    do_update_guard_settings(settings_for(project), background_export_rows=2)
    may_export(supervisor, owner)
    make_orders(project, 3, rng)
    exporter(supervisor).post(URL, {"kind": "orders", "reason": "quarterly audit"})
    supervisor.refresh_from_db()
    do_set_capabilities(
        supervisor, {**supervisor.capabilities(), "can_export": False}, acting=owner
    )
    job = ExportJob.objects.get()
    assert make_export.call(job.pk) == 0
    job.refresh_from_db()
    assert job.state == ExportJob.State.FAILED and not job.file_name


def test_files_nobody_downloaded_expire_after_a_day(
    owner: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    make_orders(project, 3, rng)
    client = exporter(owner)
    old = start(client, django_capture_on_commit_callbacks)
    fresh = start(client, django_capture_on_commit_callbacks)
    folder = Path(settings.DATA_DIR) / "exports"
    day_ago = time.time() - 25 * 3600
    os.utime(folder / old.file_name, (day_ago, day_ago))
    ExportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert client.get(download_url(old)).status_code == 410  # past its day already
    assert expire_exports in periodic_tasks()
    assert expire_exports.call() == 1
    old.refresh_from_db()
    assert old.state == ExportJob.State.EXPIRED
    assert not (folder / old.file_name).exists()
    assert (folder / fresh.file_name).exists()
    assert client.get(download_url(fresh)).status_code == 200


def _take_away(member: Membership, owner: Membership, **flags: bool) -> None:
    from callvault.accounts.actions import do_set_capabilities

    member.refresh_from_db()
    do_set_capabilities(member, {**member.capabilities(), **flags}, acting=owner)


@pytest.mark.parametrize(
    ("kind", "granted", "taken"),
    [
        ("orders", {"can_see_phones": True}, {"can_see_phones": False}),
        ("audit", {"can_view_audit": True}, {"can_view_audit": False}),
    ],
)
def test_a_ready_file_is_withdrawn_when_its_right_was_taken_away(
    owner: Membership,
    supervisor: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    django_capture_on_commit_callbacks: Capture,
    kind: str,
    granted: dict[str, bool],
    taken: dict[str, bool],
) -> None:
    may_export(supervisor, owner, **granted)
    made = make_orders(project, 3, rng)
    client = exporter(supervisor)
    extra = {"reveal": "on"} if kind == "orders" else {}
    job = start(client, django_capture_on_commit_callbacks, kind=kind, **extra)
    assert job.state == ExportJob.State.READY
    path = Path(settings.DATA_DIR) / "exports" / job.file_name
    assert path.is_file()
    _take_away(supervisor, owner, **taken)
    response = client.get(download_url(job))
    assert response.status_code == 410
    assert_no_digits(response.content.decode(), *(e164 for _, e164 in made))
    assert not path.exists()
    job.refresh_from_db()
    assert job.state == ExportJob.State.FAILED and job.downloaded_at is None
    assert not AuditEvent.objects.filter(action="export.download").exists()


def test_the_worker_stops_an_export_whose_kind_the_member_may_no_longer_make(
    owner: Membership, supervisor: Membership, project: Project, small_limit: None
) -> None:
    may_export(supervisor, owner, can_view_audit=True)
    response = exporter(supervisor).post(URL, {"kind": "audit", "reason": "quarterly audit"})
    assert response.status_code == 302  # queued; the worker has not run (no commit yet)
    _take_away(supervisor, owner, can_view_audit=False)
    job = ExportJob.objects.get()
    assert make_export.call(job.pk) == 0
    job.refresh_from_db()
    assert job.state == ExportJob.State.FAILED and not job.file_name


def test_a_failed_write_leaves_no_partial_file(
    owner: Membership,
    project: Project,
    rng: random.Random,
    small_limit: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callvault.guard import exports

    make_orders(project, 3, rng)
    exporter(owner).post(URL, {"kind": "orders", "reason": "quarterly audit", "reveal": "on"})
    job = ExportJob.objects.get()
    real = exports.csv_lines

    def breaks_midway(*args: Any) -> Any:
        lines = real(*args)
        yield next(lines)
        yield next(lines)
        yield next(lines)  # a first row with a number is on the disk
        raise OSError("disk full")

    monkeypatch.setattr(exports, "csv_lines", breaks_midway)
    folder = exports.export_dir()
    before = set(folder.iterdir())
    assert make_export.call(job.pk) == 0
    job.refresh_from_db()
    assert job.state == ExportJob.State.FAILED
    assert set(folder.iterdir()) - before == set()  # no .part left behind


def test_maintenance_deletes_the_database_caches_expired_rows(db: None, settings: Any) -> None:
    from django.core.cache import caches
    from django.db import connection

    from callvault.guard.tasks import purge_expired_cache_rows

    assert purge_expired_cache_rows in periodic_tasks()
    cache = caches["default"]
    cache.set("cv:quota:old", 3, 60)
    cache.set("cv:quota:live", 4, 3600)
    table = connection.ops.quote_name("callvault_cache")
    past = connection.ops.adapt_datetimefield_value(
        (timezone.now() - timedelta(hours=2)).replace(microsecond=0)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET expires = %s WHERE cache_key = %s",  # noqa: S608
            [past, cache.make_key("cv:quota:old")],
        )
    assert purge_expired_cache_rows.call() == 1
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT cache_key FROM {table}")  # noqa: S608
        keys = [row[0] for row in cursor.fetchall()]
    assert cache.make_key("cv:quota:old") not in keys
    assert cache.get("cv:quota:live") == 4
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert purge_expired_cache_rows.call() == 0  # Redis, locmem: nothing to do
