"""Calling hours, queue rules and the sales script."""

from __future__ import annotations

import random
from datetime import time

import pytest

from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.lib.fakephones import fake_phone
from callvault.orders.intake import Lead, LeadItem, do_create_order
from callvault.orders.models import Order, Status, WorkSettings
from callvault.orders.queue import do_record_no_answer
from callvault.orders.setup_actions import do_update_work_settings
from conftest import login

URL = "/p/alpha/setup/work/"
SCRIPT_URL = "/p/alpha/setup/script/"


def work(project) -> WorkSettings:
    return WorkSettings.objects.get(project=project)


def rules(project, **changes: object) -> dict[str, object]:
    """The form as the page would post it, unchanged but for `changes`."""
    unreachable = Status.objects.get(project=project, code="unreachable")
    data: dict[str, object] = {
        "calling_hours_start": "09:00",
        "calling_hours_end": "21:00",
        "lock_minutes": "15",
        "priority_1": "new",
        "priority_2": "callback",
        "priority_3": "retry",
        "no_answer_backoff": "15,60,240,1440",
        "max_attempts": "6",
        "status_after_max_attempts": str(unreachable.pk),
    }
    data.update(changes)
    return data


def new_order(project, rng: random.Random) -> Order:
    lead = Lead(phone=fake_phone(rng, style=1)[0], name="Ivan", items=[LeadItem("TEA", 1)])
    return do_create_order(project, lead).order


def assert_not_saved(project) -> None:
    w = work(project)
    assert (w.lock_minutes, w.queue_priority, w.no_answer_backoff) == (
        15,
        "new,callback,retry",
        "15,60,240,1440",
    )
    assert w.status_after_max_attempts is not None
    assert w.status_after_max_attempts.code == "unreachable"
    assert not AuditEvent.objects.filter(action="work_settings.update").exists()


def test_the_page_shows_the_current_rules(owner, project):
    content = login(owner).get(URL).content.decode()
    assert 'value="15,60,240,1440"' in content
    assert 'value="09:00"' in content
    assert "over midnight" in login(owner).get(URL, HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_an_owner_saves_the_rules_and_it_is_recorded(owner, project):
    cancelled = Status.objects.get(project=project, code="cancelled")
    data = rules(
        project,
        calling_hours_start="20:00",
        calling_hours_end="02:00",
        lock_minutes="30",
        no_answer_backoff=" 5, 30 ,120",
        max_attempts="3",
        status_after_max_attempts=str(cancelled.pk),
    )
    response = login(owner).post(URL, data)
    assert response.status_code == 302
    w = work(project)
    assert (w.calling_hours_start, w.calling_hours_end) == (time(20, 0), time(2, 0))
    assert (w.lock_minutes, w.no_answer_backoff, w.max_attempts) == (30, "5,30,120", 3)
    assert w.status_after_max_attempts_id == cancelled.pk
    event = AuditEvent.objects.get(action="work_settings.update")
    assert event.actor_name == "alice"
    assert event.changes == {
        "calling_hours_start": ["09:00:00", "20:00:00"],
        "calling_hours_end": ["21:00:00", "02:00:00"],
        "lock_minutes": [15, 30],
        "no_answer_backoff": ["15,60,240,1440", "5,30,120"],
        "max_attempts": [6, 3],
        "status_after_max_attempts": ["unreachable", "cancelled"],
    }


@pytest.mark.parametrize("backoff", ["15,abc", "0,60", "15,,60", "-5", "", "60;120", "²"])
def test_a_bad_back_off_list_is_refused(owner, project, backoff):
    response = login(owner).post(URL, rules(project, no_answer_backoff=backoff))
    assert response.status_code == 200
    assert "no_answer_backoff" in response.context["form"].errors
    assert_not_saved(project)


@pytest.mark.parametrize("order", [("new", "new", "retry"), ("retry", "retry", "retry")])
def test_a_queue_order_that_is_not_a_permutation_is_refused(owner, project, order):
    data = rules(project, priority_1=order[0], priority_2=order[1], priority_3=order[2])
    response = login(owner).post(URL, data)
    assert response.context["form"].errors
    assert_not_saved(project)


def test_the_action_refuses_a_bad_queue_order_by_name(project):
    for value in ("new,callback", "new,callback,retry,new", "new,callback,later", ["new"]):
        with pytest.raises(FieldErrors) as exc:
            do_update_work_settings(work(project), queue_priority=value)
        assert set(exc.value.errors) == {"queue_priority"}
    assert_not_saved(project)


def test_a_processing_status_after_the_last_attempt_is_refused(owner, project, other_project):
    no_answer = Status.objects.get(project=project, code="no_answer")
    response = login(owner).post(URL, rules(project, status_after_max_attempts=str(no_answer.pk)))
    assert "status_after_max_attempts" in response.context["form"].errors
    with pytest.raises(FieldErrors) as exc:
        do_update_work_settings(work(project), status_after_max_attempts=no_answer)
    assert set(exc.value.errors) == {"status_after_max_attempts"}
    theirs = Status.objects.get(project=other_project, code="cancelled")
    response = login(owner).post(URL, rules(project, status_after_max_attempts=str(theirs.pk)))
    assert "status_after_max_attempts" in response.context["form"].errors
    with pytest.raises(FieldErrors):
        do_update_work_settings(work(project), status_after_max_attempts=theirs)
    assert_not_saved(project)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lock_minutes", "0"), ("lock_minutes", "241"), ("max_attempts", "0"), ("max_attempts", "x")],
)
def test_numbers_out_of_range_are_refused(owner, project, field, value):
    response = login(owner).post(URL, rules(project, **{field: value}))
    assert field in response.context["form"].errors
    assert_not_saved(project)


def test_calls_cannot_start_and_end_at_the_same_time(owner, project):
    data = rules(project, calling_hours_start="10:00", calling_hours_end="10:00")
    response = login(owner).post(URL, data)
    assert "calling_hours_end" in response.context["form"].errors
    assert work(project).calling_hours_start == time(9, 0)


def test_a_new_queue_order_re_ranks_the_waiting_orders(owner, project, rng):
    fresh = new_order(project, rng)
    retried = do_record_no_answer(new_order(project, rng))
    assert (fresh.queue_rank, retried.queue_rank) == (0, 2)
    data = rules(project, priority_1="retry", priority_2="callback", priority_3="new")
    assert login(owner).post(URL, data).status_code == 302
    fresh.refresh_from_db()
    retried.refresh_from_db()
    assert (fresh.queue_rank, retried.queue_rank) == (2, 0)
    assert work(project).queue_priority == "retry,callback,new"
    assert Status.objects.get(project=project, code="new").queue_rank == 2
    event = AuditEvent.objects.get(action="work_settings.update")
    assert event.changes == {"queue_priority": ["new,callback,retry", "retry,callback,new"]}
    # New orders arrive with the new rank too.
    assert new_order(project, rng).queue_rank == 2


def test_saving_unchanged_rules_records_nothing(owner, project):
    assert login(owner).post(URL, rules(project)).status_code == 302
    assert not AuditEvent.objects.filter(action="work_settings.update").exists()


# --- the sales script -----------------------------------------------------------------------


def test_an_owner_writes_the_script_and_it_is_recorded(owner, project):
    text = "Hello, this is the tea shop.\r\nAsk about the gift box."
    response = login(owner).post(SCRIPT_URL, {"script": text})
    assert response.status_code == 302
    assert work(project).script == "Hello, this is the tea shop.\nAsk about the gift box."
    assert "Ask about the gift box." in login(owner).get(SCRIPT_URL).content.decode()
    event = AuditEvent.objects.get(action="work_settings.update")
    assert event.actor_name == "alice"
    assert event.changes == {
        "script": ["", "Hello, this is the tea shop.\nAsk about the gift box."]
    }


def test_a_script_that_is_too_long_is_refused(owner, project):
    response = login(owner).post(SCRIPT_URL, {"script": "x" * 20001})
    assert "script" in response.context["form"].errors
    assert work(project).script == ""
    with pytest.raises(FieldErrors) as exc:
        do_update_work_settings(work(project), script="y" * 20001)
    assert set(exc.value.errors) == {"script"}
    assert_not_saved(project)


def test_digits_in_the_script_are_not_copied_into_the_record(project):
    do_update_work_settings(work(project), script="Our hotline is +1 212 555 0100.")
    event = AuditEvent.objects.get(action="work_settings.update")
    assert "555" not in str(event.changes)
    assert work(project).script == "Our hotline is +1 212 555 0100."
