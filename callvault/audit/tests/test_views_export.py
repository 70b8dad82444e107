"""The CSV export /p/<slug>/audit/export.csv: capability-gated, with a reason and a fresh
step-up, watermarked, recorded (the rules of every export: guard/exports.py)."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest

from callvault.accounts import stepup
from callvault.accounts.actions import do_set_capabilities
from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.audit.tests.viewer_support import EXPORT, english, event
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.tests.support import HttpsClient, assert_no_digits, login, styles_of

Phone = tuple[str, str]
URL = EXPORT.format(slug="alpha")


def exporter(member: Membership) -> HttpsClient:
    """An English client of the member, who has just proved who they are (step-up)."""
    client = english(member)
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    return client


def read_csv(response: object) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    assert body.startswith("\ufeff")  # for Excel
    return list(csv.reader(io.StringIO(body[1:]), delimiter=";"))


def export(client: HttpsClient, reason: str = "monthly review", **filters: str) -> Any:
    """Post the export form of the audit trail with a reason and filters."""
    return client.post(URL, {"reason": reason, **filters})


def test_it_sends_anonymous_visitors_to_login(project: Project) -> None:
    for response in (HttpsClient().get(URL), HttpsClient().post(URL, {"reason": "why"})):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["operator", "trainee", "outsider", "supervisor"])
def test_it_is_not_found_without_both_capabilities(
    role: str, request: pytest.FixtureRequest, project: Project
) -> None:
    # A supervisor reads the record but may not export.
    member: Membership = request.getfixturevalue(role)
    assert login(member).get(URL).status_code == 404
    assert export(exporter(member)).status_code == 404
    assert not AuditEvent.objects.filter(action="audit.export").exists()


def test_the_search_pages_link_opens_the_export_form_with_its_filters(owner: Membership) -> None:
    response = exporter(owner).get(URL, {"action": "order.claim"})
    assert response.status_code == 302
    assert response["Location"] == "/p/alpha/guard/exports/?action=order.claim&kind=audit"
    page = exporter(owner).get(response["Location"]).content.decode()
    assert 'value="order.claim"' in page and 'name="reason"' in page
    assert not AuditEvent.objects.filter(action="audit.export").exists()


def test_a_reason_is_required(owner: Membership) -> None:
    response = export(exporter(owner), reason="")
    assert response.status_code == 200
    assert "Reason: This field is required." in response.content.decode()
    assert not AuditEvent.objects.filter(action="audit.export").exists()


def test_an_auditor_who_may_also_export_gets_the_filtered_rows_with_a_watermark(
    supervisor: Membership, owner: Membership
) -> None:
    do_set_capabilities(supervisor, {**supervisor.capabilities(), "can_export": True}, acting=owner)
    for i in range(3):
        event(supervisor.project_id, action="order.status", changes={"status": ["new", f"s{i}"]})
    event(supervisor.project_id, action="order.view")
    response = export(exporter(supervisor), action="order.status")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0][0].startswith("Exported by sam (sam) at ")
    assert rows[0][0].endswith(" for: monthly review")
    assert rows[1][:3] == ["id", "time", "actor_kind"]
    assert rows[1][-1] == "export_id"
    assert {r[-1] for r in rows[2:]} == {AuditEvent.objects.get(action="audit.export").object_id}
    assert len(rows) == 2 + 3
    assert {r[5] for r in rows[2:]} == {"order.status"}
    assert "Status: new → s0" in {r[10] for r in rows[2:]}


def test_an_export_is_recorded_with_its_filter_and_row_count(owner: Membership) -> None:
    for _ in range(4):
        event(owner.project_id, action="order.claim")
    response = export(exporter(owner), reason="who claimed what", action="order.claim")
    rows = read_csv(response)
    recorded = AuditEvent.objects.get(action="audit.export")
    assert recorded.actor_id == str(owner.user_id)
    assert recorded.object_type == "export"
    assert recorded.extra["filters"] == {"action": "order.claim"}
    assert recorded.extra["rows"] == 4 == len(rows) - 2
    assert recorded.extra["reason"] == "who claimed what"
    assert (recorded.extra["kind"], recorded.extra["phones"]) == ("audit", "masked")


def test_cells_that_look_like_formulas_are_defused(owner: Membership) -> None:
    event(owner.project_id, actor_name='=HYPERLINK("http://evil")', action="order.view")
    rows = read_csv(export(exporter(owner), action="order.view"))
    assert rows[2][4].startswith("'=")


def test_the_csv_carries_no_digits(
    owner: Membership, supervisor: Membership, project: Project, phone: Phone
) -> None:
    do_set_capabilities(supervisor, {**supervisor.capabilities(), "can_export": True}, acting=owner)
    order = do_create_order(project, Lead(phone=phone[0], name="Ivan")).order
    for typed in styles_of(phone[1]):
        event(
            project.pk,
            action="order.update",
            object_id=str(order.pk),
            changes={"customer_name": ["Ivan", f"Ivan {typed}"], "phone": "changed"},
        )
    text = "\n".join(",".join(r) for r in read_csv(export(exporter(supervisor))))
    assert "changed (hidden)" in text
    assert_no_digits(text, phone[1])


def test_without_a_fresh_proof_nothing_is_exported_or_recorded(owner: Membership) -> None:
    event(owner.project_id, action="order.claim")
    response = export(english(owner), action="order.claim")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/step-up/?next=")
    assert "kind%3Daudit" in response["Location"]  # back to the audit export's form
    assert not AuditEvent.objects.filter(action="audit.export").exists()
