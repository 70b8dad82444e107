"""orders.actions: numbering, edits with the version check, statuses, and what the record keeps."""

from __future__ import annotations

import pytest

from callvault.accounts.models import Project
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.orders.actions import StaleOrder, do_add_comment, do_change_status, do_update_order
from callvault.orders.intake import Lead, do_create_order
from callvault.orders.models import Order, Status
from callvault.orders.tests.support import assert_no_digits, event_text, reveal_e164, styles_of
from callvault.vault.phones import blind_index

Phone = tuple[str, str]


def another_number(e164: str) -> str:
    """A different reserved number in the same area code."""
    return f"+1 {e164[2:5]} 555 0{100 + (int(e164[-3:]) - 99) % 100}"


def fresh(order: Order) -> Order:
    return Order.objects.select_related("project", "status").get(pk=order.pk)


def test_numbers_are_sequential_per_project(
    project: Project, other_project: Project, phone: Phone
) -> None:
    numbers = [
        (p.slug, do_create_order(p, Lead(phone=phone[0])).order.number)
        for p in (project, other_project, project, project, other_project)
    ]
    assert numbers == [("alpha", 1), ("beta", 1), ("alpha", 2), ("alpha", 3), ("beta", 2)]


def test_the_same_number_in_another_format_is_no_change(order: Order, phone: Phone) -> None:
    sealed, version = order.phone_sealed, order.version
    events = AuditEvent.objects.count()
    do_update_order(fresh(order), {"phone": styles_of(phone[1])[4]})
    stored = fresh(order)
    assert stored.phone_sealed == sealed
    assert stored.version == version
    assert AuditEvent.objects.count() == events


def test_the_same_number_beside_another_edit_keeps_its_ciphertext(
    order: Order, phone: Phone
) -> None:
    sealed = order.phone_sealed
    do_update_order(fresh(order), {"phone": styles_of(phone[1])[3], "customer_name": "Ivan P."})
    assert fresh(order).phone_sealed == sealed
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {"customer_name": ["Ivan Petrov", "Ivan P."]}


def test_a_new_number_is_resealed_and_recorded_as_changed(
    project: Project, order: Order, phone: Phone
) -> None:
    new = another_number(phone[1])
    new_e164 = "+1" + "".join(ch for ch in new if ch.isdigit())[1:]
    do_update_order(fresh(order), {"phone": new})
    stored = fresh(order)
    assert stored.phone_sealed != order.phone_sealed
    assert stored.phone_index == blind_index(new_e164, project_id=project.pk)
    assert reveal_e164(stored) == new_e164
    assert stored.phone_mask.endswith(new_e164[-4:])
    assert stored.version == order.version + 1
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {"phone": "changed"}
    assert_no_digits(event_text(event), phone[1], new_e164)


def test_an_edit_records_before_and_after(order: Order) -> None:
    do_update_order(fresh(order), {"customer_name": "Ivan Sidorov", "address": "Tver"})
    event = AuditEvent.objects.get(action="order.update")
    assert event.changes == {
        "address": ["Moscow", "Tver"],
        "customer_name": ["Ivan Petrov", "Ivan Sidorov"],
    }


def test_a_stale_version_raises_and_writes_nothing(order: Order) -> None:
    mine, theirs = fresh(order), fresh(order)
    do_update_order(theirs, {"customer_name": "Saved first"})
    events = AuditEvent.objects.count()
    with pytest.raises(StaleOrder):
        do_update_order(mine, {"customer_name": "Saved late"}, expected_version=order.version)
    stored = fresh(order)
    assert stored.customer_name == "Saved first"
    assert stored.version == order.version + 1
    assert AuditEvent.objects.count() == events


def test_a_bad_phone_in_an_edit_is_named_and_nothing_is_written(order: Order) -> None:
    with pytest.raises(FieldErrors) as caught:
        do_update_order(fresh(order), {"phone": "not a phone", "customer_name": "X"})
    assert set(caught.value.errors) == {"phone"}
    assert fresh(order).customer_name == "Ivan Petrov"


def test_fields_outside_the_editable_set_are_refused(order: Order) -> None:
    with pytest.raises(FieldErrors) as caught:
        do_update_order(fresh(order), {"number": 99, "phone_sealed": "x"})
    assert set(caught.value.errors) == {"number", "phone_sealed"}
    assert fresh(order).number == order.number


def test_a_status_of_another_project_is_refused(other_project: Project, order: Order) -> None:
    theirs = Status.objects.get(project=other_project, code="accepted")
    with pytest.raises(FieldErrors) as caught:
        do_change_status(fresh(order), theirs)
    assert set(caught.value.errors) == {"status"}
    assert fresh(order).status.code == "new"
    assert not AuditEvent.objects.filter(action="order.status").exists()


def test_an_inactive_status_is_refused(project: Project, order: Order) -> None:
    status = Status.objects.get(project=project, code="shipped")
    Status.objects.filter(pk=status.pk).update(is_active=False)
    status.refresh_from_db()
    with pytest.raises(FieldErrors):
        do_change_status(fresh(order), status)
    assert fresh(order).status.code == "new"


def test_leaving_processing_clears_the_next_call(project: Project, order: Order) -> None:
    assert order.next_call_at is not None
    do_change_status(fresh(order), Status.objects.get(project=project, code="accepted"))
    assert fresh(order).next_call_at is None


def test_a_comment_quoting_a_phone_is_redacted_in_the_record(order: Order, phone: Phone) -> None:
    comment = do_add_comment(fresh(order), f"the wife's number: {phone[0]}", author=None)
    event = AuditEvent.objects.get(action="order.comment")
    assert event.changes == {f"comment {comment.pk}": [None, "the wife's number: [redacted]"]}
    assert_no_digits(event_text(event), phone[1])


def test_a_lead_comment_quoting_a_phone_is_redacted_in_the_record(
    project: Project, phone: Phone
) -> None:
    do_create_order(project, Lead(phone=phone[0], comment=f"or {styles_of(phone[1])[2]}"))
    event = AuditEvent.objects.get(action="order.comment")
    assert "[redacted]" in event_text(event)
    assert_no_digits(event_text(event), phone[1])


def test_a_status_reason_quoting_a_phone_is_redacted_in_the_record(
    project: Project, order: Order, phone: Phone
) -> None:
    cancelled = Status.objects.get(project=project, code="cancelled")
    do_change_status(fresh(order), cancelled, reason=f"wrong number, real one {phone[0]}")
    for event in AuditEvent.objects.filter(action__in=["order.status", "order.comment"]):
        assert_no_digits(event_text(event), phone[1])
    assert AuditEvent.objects.get(action="order.status").extra["reason"].endswith("[redacted]")


def test_an_empty_comment_is_refused(order: Order) -> None:
    with pytest.raises(FieldErrors) as caught:
        do_add_comment(fresh(order), "   ", author=None)
    assert set(caught.value.errors) == {"text"}
    assert not fresh(order).comments.exists()
