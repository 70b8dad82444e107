"""The statuses page: a project's statuses in order, new ones, and edits that keep the
queue and the record consistent."""

from __future__ import annotations

import pytest

from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Status, WorkSettings
from callvault.orders.setup_actions import do_create_status, do_update_status
from conftest import login

URL = "/p/alpha/setup/statuses/"


def edit_url(status: Status) -> str:
    return f"{URL}{status.pk}/"


def status(project, code: str) -> Status:
    return Status.objects.get(project=project, code=code)


def edit_data(s: Status, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": s.name,
        "group": s.group,
        "queue_class": s.queue_class,
        "position": s.position,
    }
    if s.requires_reason:
        data["requires_reason"] = "on"
    if s.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_list_is_in_position_order(owner, project):
    do_update_status(status(project, "returned"), position=0)
    response = login(owner).get(URL)
    codes = [s.code for s in response.context["statuses"]]
    assert codes[0] == "new" and codes[1] == "returned"  # same position: older first
    content = response.content.decode()
    assert content.index("<code>returned</code>") < content.index("<code>callback</code>")


def test_an_owner_creates_a_status(owner, project):
    response = login(owner).post(
        URL,
        {"code": "paid", "name": "Paid", "group": "accepted", "requires_reason": "on"},
    )
    assert response.status_code == 302
    paid = status(project, "paid")
    assert (paid.name, paid.group, paid.queue_class, paid.requires_reason) == (
        "Paid",
        "accepted",
        "",
        True,
    )
    assert paid.position == Status.objects.filter(project=project).count() - 1
    event = AuditEvent.objects.get(action="status.create", object_id=str(paid.pk))
    assert event.actor_name == "alice"
    assert event.changes["code"] == [None, "paid"]
    assert event.changes["requires_reason"] == [None, True]


def test_a_new_queued_status_gets_its_class_rank(owner, project):
    login(owner).post(
        URL,
        {"code": "second_try", "name": "Second try", "group": "processing", "queue_class": "retry"},
    )
    # Default order: new, callback, retry.
    assert status(project, "second_try").queue_rank == 2


@pytest.mark.parametrize("code", ["accepted", "ACCEPTED"])
def test_a_duplicate_code_is_refused(owner, project, code):
    count = Status.objects.filter(project=project).count()
    response = login(owner).post(URL, {"code": code, "name": "Again", "group": "accepted"})
    assert response.status_code == 200
    assert "code" in response.context["form"].errors
    assert Status.objects.filter(project=project).count() == count
    assert not AuditEvent.objects.filter(action="status.create", actor_name="alice").exists()


def test_the_same_code_in_another_project_is_fine(owner, other_project):
    response = login(owner).post(URL, {"code": "paid", "name": "Paid", "group": "accepted"})
    assert response.status_code == 302
    do_create_status(other_project, code="paid", name="Paid", group="accepted")


def test_a_queue_class_is_only_for_processing_statuses(owner, project):
    count = Status.objects.filter(project=project).count()
    response = login(owner).post(
        URL, {"code": "odd", "name": "Odd", "group": "accepted", "queue_class": "callback"}
    )
    assert "queue_class" in response.context["form"].errors
    assert Status.objects.filter(project=project).count() == count
    accepted = status(project, "accepted")
    response = login(owner).post(edit_url(accepted), edit_data(accepted, queue_class="new"))
    assert "queue_class" in response.context["form"].errors
    accepted.refresh_from_db()
    assert accepted.queue_class == ""


def test_an_owner_edits_a_status_and_it_is_recorded(owner, project):
    accepted = status(project, "accepted")
    data = edit_data(accepted, name="Confirmed", position=7, requires_reason="on")
    response = login(owner).post(edit_url(accepted), data)
    assert response.status_code == 302
    accepted.refresh_from_db()
    assert (accepted.name, accepted.position, accepted.requires_reason) == ("Confirmed", 7, True)
    event = AuditEvent.objects.get(action="status.update")
    assert event.actor_name == "alice"
    assert event.changes == {
        "name": ["Accepted", "Confirmed"],
        "position": [3, 7],
        "requires_reason": [False, True],
    }


def test_the_initial_status_cannot_be_deactivated(owner, project):
    new = status(project, "new")
    response = login(owner).post(edit_url(new), edit_data(new, is_active=None))
    assert "is_active" in response.context["form"].errors
    new.refresh_from_db()
    assert new.is_active


def test_a_status_with_orders_keeps_its_meaning(owner, project, order):
    new = status(project, "new")
    response = login(owner).post(edit_url(new), edit_data(new, queue_class="retry"))
    assert "queue_class" in response.context["form"].errors
    new.refresh_from_db()
    assert new.queue_class == "new"
    # Renaming it is fine.
    assert login(owner).post(edit_url(new), edit_data(new, name="Fresh")).status_code == 302


def test_a_status_with_orders_can_be_deactivated_but_not_deleted(owner, project, order):
    accepted = status(project, "accepted")
    order.status = accepted
    order.save(update_fields=["status"])
    response = login(owner).post(edit_url(accepted), edit_data(accepted, is_active=None))
    assert response.status_code == 302
    accepted.refresh_from_db()
    assert not accepted.is_active
    order.refresh_from_db()
    assert order.status_id == accepted.pk
    assert AuditEvent.objects.get(action="status.update").changes == {"is_active": [True, False]}


def test_the_last_active_status_of_a_queue_class_stays(owner, project):
    callback = status(project, "callback")
    response = login(owner).post(edit_url(callback), edit_data(callback, is_active=None))
    assert "is_active" in response.context["form"].errors
    response = login(owner).post(edit_url(callback), edit_data(callback, queue_class=""))
    assert "queue_class" in response.context["form"].errors
    callback.refresh_from_db()
    assert callback.is_active and callback.queue_class == "callback"
    do_create_status(
        project, code="call_later", name="Call later", group="processing", queue_class="callback"
    )
    response = login(owner).post(edit_url(callback), edit_data(callback, is_active=None))
    assert response.status_code == 302


def test_the_status_after_the_last_attempt_stays_active_and_final(project):
    unreachable = WorkSettings.objects.get(project=project).status_after_max_attempts
    assert unreachable is not None
    with pytest.raises(FieldErrors) as exc:
        do_update_status(unreachable, is_active=False)
    assert set(exc.value.errors) == {"is_active"}
    with pytest.raises(FieldErrors) as exc:
        do_update_status(unreachable, group="processing")
    assert "group" in exc.value.errors
    unreachable.refresh_from_db()
    assert unreachable.is_active and unreachable.group == "cancelled"


def test_the_code_cannot_be_edited(project):
    with pytest.raises(FieldErrors) as exc:
        do_update_status(status(project, "new"), code="fresh")
    assert set(exc.value.errors) == {"code"}


def test_bad_input_is_named_by_field(project):
    with pytest.raises(FieldErrors) as exc:
        do_create_status(project, code="no spaces", name=" ", group="nope", queue_class="x")
    assert set(exc.value.errors) == {"code", "name", "group", "queue_class"}
    assert not Status.objects.filter(project=project, code="no spaces").exists()
