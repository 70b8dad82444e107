"""The report export: the dashboard's table of operators for a day, under the export rules."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Membership
from callvault.audit.models import AuditEvent
from callvault.guard.models import ExportJob
from callvault.guard.tests.test_exports import URL, exporter, may_export, read_csv
from callvault.orders.dashboard import build_dashboard
from callvault.orders.tests.test_dashboard import Day, day  # noqa: F401 (the fixture)


def figures(rows: list[list[str]]) -> dict[str, list[str]]:
    """Each data row by operator: processed, approved, rate, no answers, callbacks due."""
    return {r[0]: r[2:7] for r in rows[2:]}


def test_todays_report_matches_the_dashboard(day: Day) -> None:  # noqa: F811
    owner = Membership.objects.get(project=day.project, user__username="alice")
    rows = read_csv(exporter(owner).post(URL, {"kind": "report", "reason": "daily review"}))
    assert rows[0][0].startswith("Exported by alice")
    assert rows[1] == [
        "operator",
        "name",
        "processed",
        "approved",
        "approval_rate",
        "no_answers",
        "callbacks_due",
        "export_id",
    ]
    board = build_dashboard(day.project)
    expected = {
        row.user.username if row.user else "Total": [
            str(row.processed),
            str(row.approved),
            "" if row.approval_rate is None else f"{row.approval_rate}%",
            str(row.no_answers),
            str(row.callbacks_due),
        ]
        for row in [*board.operators, board.totals]
    }
    assert figures(rows) == expected
    assert figures(rows)["bob"][:2] == ["4", "1"]  # the fixture's day, not an empty table
    event = AuditEvent.objects.get(action="report.export")
    job = ExportJob.objects.get()
    assert (event.object_type, event.object_id) == ("export", str(job.pk))
    assert event.extra["rows"] == len(board.operators) == len(rows) - 3  # less the total


def test_a_past_days_report_holds_that_days_work(day: Day) -> None:  # noqa: F811
    owner = Membership.objects.get(project=day.project, user__username="alice")
    yesterday = day.at(12, days_ago=1).date().isoformat()
    response = exporter(owner).post(
        URL, {"kind": "report", "reason": "yesterday", "day": yesterday}
    )
    rows = figures(read_csv(response))
    assert rows["bob"][:2] == ["1", "1"]  # y1, accepted late yesterday
    assert rows["olga"][3] == "1"  # the no-answer on y2
    event = AuditEvent.objects.get(action="report.export")
    assert event.extra["filters"]["day"] == yesterday


@pytest.mark.parametrize("role", ["operator", "trainee"])
def test_members_who_may_not_see_the_dashboard_cannot_export_the_report(
    role: str,
    day: Day,  # noqa: F811
) -> None:
    member = day.members["bob" if role == "operator" else "tina"]
    owner = Membership.objects.get(project=day.project, user__username="alice")
    may_export(member, owner)
    response = exporter(member).post(URL, {"kind": "report", "reason": "curious"})
    assert "What: Select a valid choice." in response.content.decode()
    assert not AuditEvent.objects.filter(action="report.export").exists()
