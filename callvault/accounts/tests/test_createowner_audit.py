"""The first owner's creation is on the record, as the command that made it."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from callvault.audit.models import AuditEvent


def test_createowner_records_its_events_as_one_system_run(db: None) -> None:
    call_command(
        "createowner",
        "--username",
        "olga",
        "--project",
        "Tea shop",
        "--slug",
        "tea",
        stdout=StringIO(),
    )
    events = AuditEvent.objects.all()
    assert {"user.create", "project.create", "member.add"} <= {e.action for e in events}
    assert {e.actor_name for e in events} == {"system: createowner"}
    assert len({e.request_id for e in events}) == 1 and events[0].request_id
