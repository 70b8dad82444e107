"""The exports page /p/<slug>/guard/exports/: who may export, the reason, the step-up, the
masked or opened numbers, the watermark and the record of each export."""

from __future__ import annotations

import csv
import io
import random
import time
from typing import Any

import pytest
from django.test import Client

from callvault.accounts import stepup
from callvault.accounts.actions import do_set_capabilities
from callvault.accounts.models import Membership, Project
from callvault.audit.models import AuditEvent
from callvault.guard import alerts
from callvault.guard.models import ExportJob
from callvault.guard.quotas import do_set_quota
from callvault.lib.fakephones import fake_phone
from callvault.orders.actions import do_assign_order
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient, assert_no_digits

URL = "/p/alpha/guard/exports/"


def exporter(member: Membership) -> HttpsClient:
    """An English client of the member, who has just proved who they are (step-up)."""
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(member.user)
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    return client


def may_export(member: Membership, owner: Membership, **more: bool) -> Membership:
    """The member, given the export capability (and any other flags) by the owner."""
    flags = {**member.capabilities(), "can_export": True, **more}
    return do_set_capabilities(member, flags, acting=owner)


def make_orders(project: Project, count: int, rng: random.Random) -> list[tuple[Order, str]]:
    """Orders with numbers from the reserved range: (order, E.164)."""
    made = []
    for i in range(count):
        typed, e164 = fake_phone(rng, style=1)
        made.append((do_create_order(project, Lead(phone=typed, name=f"Ivan {i}")).order, e164))
    return made


def read_csv(response: Any) -> list[list[str]]:
    """The rows of a CSV response; it starts with a byte-order mark and splits on ";"."""
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:]), delimiter=";"))


def export(client: Client, **data: str) -> Any:
    return client.post(URL, {"kind": "orders", "reason": "monthly check", **data})


def test_it_sends_anonymous_visitors_to_login(project: Project) -> None:
    for response in (HttpsClient().get(URL), HttpsClient().post(URL, {"reason": "x"})):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["operator", "trainee", "supervisor", "outsider"])
def test_it_is_not_found_without_the_capability(
    role: str, request: pytest.FixtureRequest, project: Project
) -> None:
    member: Membership = request.getfixturevalue(role)
    client = exporter(member)
    assert client.get(URL).status_code == 404
    assert export(client).status_code == 404
    assert not ExportJob.objects.exists()
    assert not AuditEvent.objects.filter(object_type="export").exists()


def test_an_owner_gets_the_form_with_every_kind(owner: Membership) -> None:
    response = exporter(owner).get(URL)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'name="reason"' in text
    assert "?kind=audit" in text and "?kind=report" in text
    assert 'name="reveal"' in text  # an owner may see numbers


def test_an_operator_who_may_export_is_offered_only_orders_and_no_numbers(
    operator: Membership, owner: Membership
) -> None:
    may_export(operator, owner)
    text = exporter(operator).get(URL).content.decode()
    assert "?kind=audit" not in text and "?kind=report" not in text
    assert 'name="reveal"' not in text
    response = export(exporter(operator), kind="audit")
    assert "What: Select a valid choice." in response.content.decode()
    assert not ExportJob.objects.exists()


def test_the_reason_is_required_and_the_error_names_the_field(owner: Membership) -> None:
    client = exporter(owner)
    for reason in ("", "  ", "ab"):
        response = client.post(URL, {"kind": "orders", "reason": reason})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        assert "Reason: " in response.content.decode()
    assert not ExportJob.objects.exists()
    assert not AuditEvent.objects.filter(object_type="export").exists()


def test_a_reason_longer_than_300_characters_is_refused(owner: Membership) -> None:
    response = export(exporter(owner), reason="x" * 301)
    assert "Reason: " in response.content.decode()
    assert not ExportJob.objects.exists()


def test_without_a_fresh_proof_nothing_is_exported_or_recorded(owner: Membership) -> None:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(owner.user)
    response = export(client)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/step-up/?next=")
    assert "guard%2Fexports" in response["Location"]
    assert not ExportJob.objects.exists()
    assert not AuditEvent.objects.filter(object_type="export").exists()


def test_a_stale_proof_is_not_enough(owner: Membership) -> None:
    client = exporter(owner)
    session = client.session
    session[stepup.SESSION_KEY] = time.time() - 60 * 60
    session.save()
    assert export(client).status_code == 302
    assert not ExportJob.objects.exists()


def test_numbers_are_masked_for_a_member_who_may_not_see_them(
    supervisor: Membership, owner: Membership, project: Project, rng: random.Random
) -> None:
    may_export(supervisor, owner)
    made = make_orders(project, 3, rng)
    # Asking for the numbers without the capability is ignored: the field is not there.
    rows = read_csv(export(exporter(supervisor), reveal="on"))
    text = "\n".join(";".join(r) for r in rows)
    assert_no_digits(text, *(e164 for _, e164 in made))
    phones = [r[4] for r in rows[2:]]
    # A leading "+" would make a spreadsheet formula: the cell is defused with an apostrophe.
    assert phones == ["'" + order.phone_masked(2) for order, _ in reversed(made)]
    event = AuditEvent.objects.get(action="order.export")
    assert (event.extra["phones"], event.extra["revealed"]) == ("masked", 0)


def test_an_owner_gets_masks_unless_asking_for_the_numbers(
    owner: Membership, project: Project, rng: random.Random
) -> None:
    made = make_orders(project, 2, rng)
    masked = "\n".join(";".join(r) for r in read_csv(export(exporter(owner))))
    assert_no_digits(masked, *(e164 for _, e164 in made))
    rows = read_csv(export(exporter(owner), reveal="on"))
    assert [r[4] for r in rows[2:]] == ["'" + e164 for _, e164 in reversed(made)]
    opened = AuditEvent.objects.filter(action="order.export").order_by("id").last()
    assert opened is not None
    assert (opened.extra["phones"], opened.extra["revealed"]) == ("revealed", 2)
    assert all(e164 not in str(opened.extra) for _, e164 in made)


def test_each_opened_number_counts_against_the_reveal_quota(
    supervisor: Membership, owner: Membership, project: Project, rng: random.Random
) -> None:
    may_export(supervisor, owner, can_see_phones=True)
    do_set_quota(project, "reveal", 2, membership=supervisor, acting=owner)
    make_orders(project, 3, rng)
    response = export(exporter(supervisor), reveal="on")
    assert response.status_code == 200
    assert "quota of 2 numbers" in response.content.decode()
    assert not AuditEvent.objects.filter(action="order.export").exists()
    # Masked, the same export is fine.
    assert len(read_csv(export(exporter(supervisor)))) == 2 + 3


def test_the_file_names_its_maker_time_and_reason_and_every_row_the_export(
    owner: Membership, project: Project, rng: random.Random
) -> None:
    owner.user.first_name, owner.user.last_name = "Alice", "Smith"
    owner.user.save()
    make_orders(project, 3, rng)
    rows = read_csv(export(exporter(owner), reason="=cmd for the tax office"))
    job = ExportJob.objects.get()
    assert rows[0][0].startswith("Exported by alice (Alice Smith) at ")
    assert rows[0][0].endswith(" for: =cmd for the tax office")
    assert rows[1][-1] == "export_id" and rows[1][0] == "number"
    assert len(rows) == 2 + 3
    assert {r[-1] for r in rows[2:]} == {str(job.pk)}
    assert job.reason == "=cmd for the tax office"


def test_an_export_is_recorded_with_its_row_count_filters_and_reason(
    owner: Membership, project: Project, rng: random.Random
) -> None:
    made = make_orders(project, 4, rng)
    do_assign_order(made[0][0], owner.user)
    response = export(exporter(owner), operator=str(owner.user_id), reason="one operator")
    rows = read_csv(response)
    job = ExportJob.objects.get()
    event = AuditEvent.objects.get(action="order.export")
    assert (event.object_type, event.object_id) == ("export", str(job.pk))
    assert event.actor_id == str(owner.user_id)
    assert event.extra["rows"] == 1 == len(rows) - 2 == job.row_count
    assert event.extra["kind"] == "orders"
    assert event.extra["reason"] == "one operator"
    assert event.extra["filters"] == {"operator": str(owner.user_id)}
    assert event.extra["background"] is False
    assert job.state == ExportJob.State.DOWNLOADED


def test_a_number_typed_into_the_reason_is_blanked(
    owner: Membership, project: Project, phone: tuple[str, str]
) -> None:
    read_csv(export(exporter(owner), reason=f"customer {phone[0]} asked"))
    assert_no_digits(str(AuditEvent.objects.get(action="order.export").extra), phone[1])
    assert_no_digits(ExportJob.objects.get().reason, phone[1])


def test_an_operator_exports_only_the_orders_they_see(
    operator: Membership, owner: Membership, project: Project, rng: random.Random
) -> None:
    may_export(operator, owner)
    made = make_orders(project, 3, rng)
    do_assign_order(made[1][0], operator.user)
    rows = read_csv(export(exporter(operator)))
    assert [r[0] for r in rows[2:]] == [str(made[1][0].number)]


def test_invalid_filters_are_shown_not_ignored(owner: Membership) -> None:
    response = export(exporter(owner), date_from="2026-05-02", date_to="2026-05-01")
    assert "The end date is before the start date." in response.content.decode()
    assert not ExportJob.objects.exists()


def test_each_export_is_shown_to_the_alerts(
    owner: Membership, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, str]] = []
    monkeypatch.setattr(alerts, "observe", lambda member, kind: seen.append((member.pk, kind)))
    read_csv(export(exporter(owner)))
    assert (owner.pk, "export") in seen


def test_members_see_their_own_exports_and_owners_everyones(
    owner: Membership, supervisor: Membership
) -> None:
    may_export(supervisor, owner)
    read_csv(export(exporter(owner), reason="owner's reason"))
    read_csv(export(exporter(supervisor), reason="supervisor's reason"))
    mine = exporter(supervisor).get(URL).content.decode()
    assert "supervisor&#x27;s reason" in mine and "owner&#x27;s reason" not in mine
    everyone = exporter(owner).get(URL).content.decode()
    assert "supervisor&#x27;s reason" in everyone and "owner&#x27;s reason" in everyone


def test_support_staff_cannot_export_even_with_the_widest_grant(owner: Membership) -> None:
    from callvault.accounts.actions import do_change_password
    from callvault.accounts.support import do_create_support_account, do_grant_support_access

    first = do_create_support_account("vendor-kim", "a first password of the vendor 1")
    account = do_change_password(first, "kim's own vendor passphrase 2026")
    do_grant_support_access(
        owner.project,
        hours=4,
        reason="ticket 42",
        account=account,
        acting=owner,
        read_only=False,
        may_see_phones=True,
    )
    client = HttpsClient()
    client.force_login(account)
    session = client.session
    session[stepup.SESSION_KEY] = time.time()
    session.save()
    assert client.get(URL).status_code == 404
    assert export(client).status_code == 404
    assert client.get("/p/alpha/guard/exports/1/download/").status_code == 404


def test_the_opened_numbers_are_charged_at_once_and_masks_not_at_all(
    supervisor: Membership,
    owner: Membership,
    project: Project,
    rng: random.Random,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callvault.guard import quotas

    may_export(supervisor, owner, can_see_phones=True)
    do_set_quota(project, "reveal", 5, membership=supervisor, acting=owner)
    make_orders(project, 3, rng)
    calls: list[tuple[str, int]] = []
    real = quotas.charge

    def spy(member: Any, kind: str, **kw: Any) -> None:
        calls.append((kind, kw.get("n", 1)))
        real(member, kind, **kw)

    monkeypatch.setattr(quotas, "charge", spy)
    assert len(read_csv(export(exporter(supervisor)))) == 2 + 3  # masked: nothing charged
    assert calls == []
    assert len(read_csv(export(exporter(supervisor), reveal="on"))) == 2 + 3
    assert calls == [("reveal", 3)]  # one charge of three numbers, not three charges
    # Three of five are used: the same three numbers again would pass the quota.
    response = export(exporter(supervisor), reveal="on")
    assert "quota of 5 numbers" in response.content.decode()
