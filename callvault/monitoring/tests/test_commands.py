"""`callvault monitoring`: the read-back commands the agent's end-to-end test relies on, and
set-policy."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from callvault.audit.models import AuditEvent
from callvault.monitoring.heartbeats import Heartbeat, do_ingest_heartbeats
from callvault.monitoring.models import Device, MonitoringPolicy
from callvault.monitoring.screenshots import do_receive_screenshot
from callvault.monitoring.tests.support import enrol, image_bytes, same_picture

MORNING = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # 09:00 in Moscow, the project's zone


@pytest.fixture
def device(operator):
    dev, _ = enrol(operator)
    return Device.objects.select_related("project__monitoring_policy").get(pk=dev.pk)


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("monitoring", *args, stdout=out)
    return out.getvalue()


def test_spans_prints_the_days_spans_as_json_lines(device):
    beats = [
        Heartbeat(i + 1, MORNING + timedelta(seconds=5 * i), "active", "crm", "Ü") for i in range(3)
    ]
    beats.append(Heartbeat(4, MORNING + timedelta(seconds=15), "idle", None, None))
    do_ingest_heartbeats(device, beats)
    printed = run("spans", "--project", "alpha", "--username", "bob", "--date", "2026-11-20")
    lines = [json.loads(line) for line in printed.splitlines()]
    assert lines == [
        {"start": "2026-11-20T06:00:00Z", "end": "2026-11-20T06:00:15Z", "state": "active",
         "app": "crm", "title": "Ü"},
        {"start": "2026-11-20T06:00:15Z", "end": "2026-11-20T06:00:15Z", "state": "idle",
         "app": None, "title": None},
    ]  # fmt: skip
    assert run("spans", "--project", "alpha", "--username", "bob", "--date", "2026-11-21") == ""
    utc = run("spans", "--project", "alpha", "--username", "bob", "--date", "2026-11-20",
              "--zone", "UTC")  # fmt: skip
    assert len(utc.splitlines()) == 2


def test_screenshot_writes_the_decrypted_image_and_records_the_view(device, tmp_path):
    content = [image_bytes(30, 20), image_bytes(50, 40, colour="blue")]
    made = [
        do_receive_screenshot(
            device, client_id=uuid.uuid4(), taken_at=MORNING + timedelta(minutes=i), content=c
        ).screenshot
        for i, c in enumerate(content)
    ]
    out = tmp_path / "first.webp"
    info = json.loads(run("screenshot", "--id", str(made[0].pk), "--out", str(out)))
    assert info == {"id": made[0].pk, "width": 30, "height": 20, "taken_at": "2026-11-20T06:00:00Z"}
    assert same_picture(out.read_bytes(), content[0])
    latest = tmp_path / "latest.webp"
    info = json.loads(
        run(
            "screenshot",
            "--latest",
            "--project",
            "alpha",
            "--username",
            "bob",
            "--out",
            str(latest),
        )
    )
    assert info["id"] == made[1].pk and same_picture(latest.read_bytes(), content[1])
    views = AuditEvent.objects.filter(action="screenshot.view").order_by("id")
    assert [v.object_id for v in views] == [str(made[0].pk), str(made[1].pk)]
    assert {v.actor_name for v in views} == {"system: monitoring screenshot"}
    with pytest.raises(CommandError):
        run("screenshot", "--id", "999999", "--out", str(out))


def test_set_policy_changes_and_records_it(project):
    printed = json.loads(
        run(
            "set-policy",
            "--project",
            "alpha",
            "heartbeat_seconds=2",
            "idle_seconds=6",
            "screenshots_per_interval=2,4",
            "working_hours=on",
            "work_days=1,2,3",
            "work_start=08:30",
            'redact_patterns=["\\\\d{6,}"]',
        )
    )
    policy = MonitoringPolicy.objects.get(project=project)
    assert printed["version"] == policy.version == 2
    assert (policy.heartbeat_seconds, policy.idle_seconds) == (2, 6)
    assert (policy.screenshots_min, policy.screenshots_max) == (2, 4)
    assert policy.working_hours and policy.work_days == "123"
    assert policy.redact_patterns == ["\\d{6,}"]
    event = AuditEvent.objects.get(action="monitoring_policy.update")
    assert event.actor_name == "system: monitoring set-policy"
    assert event.changes["work_start"] == ["09:00:00", "08:30:00"]


@pytest.mark.parametrize(
    "setting", ["colour=blue", "heartbeat_seconds=0", "screenshot_format=gif", "nonsense"]
)
def test_set_policy_refuses_what_is_wrong(project, setting):
    with pytest.raises(CommandError):
        run("set-policy", "--project", "alpha", setting)
    assert MonitoringPolicy.objects.get(project=project).version == 1
