"""The record is complete: every row has its history, every action is in the catalogue, every
actor kind is named, and a command, a task or a request groups its events under one id."""

from __future__ import annotations

import ast
import re
from datetime import time
from pathlib import Path

from django.apps import apps
from django.core.management import call_command
from django.test import Client
from django_tasks import task

from callvault.accounts.actions import do_update_project
from callvault.accounts.models import User
from callvault.accounts.twofactor import do_add_passkey
from callvault.audit.context import (
    ANONYMOUS,
    SYSTEM,
    Actor,
    acting_as,
    connect_task_signals,
    current,
)
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.recorder import record_event
from callvault.orders.actions import do_add_comment, do_add_item, do_remove_item
from callvault.orders.models import Order, OrderItem, Product, Status, WorkSettings
from callvault.orders.setup_actions import do_update_work_settings
from conftest import login

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "docs" / "audit-events.md"

# Where each audited model's rows find their history: (object_type, how to get the object id
# from a row, the key its changes use or None when the event is about the row itself).
AUDITED = {
    "accounts.User": ("user", "pk", None),
    "accounts.Project": ("project", "pk", None),
    "accounts.Membership": ("membership", "pk", None),
    "accounts.ApiKey": ("api_key", "pk", None),
    "accounts.SecurityPolicy": ("security_policy", "pk", None),
    "accounts.RolePolicy": ("role_policy", "pk", None),
    "accounts.AllowedNetwork": ("allowed_network", "pk", None),
    "accounts.SupportGrant": ("support_grant", "pk", None),
    "accounts.WebAuthnCredential": ("user", "user_id", "passkey"),
    "guard.GuardSettings": ("guard_settings", "pk", None),
    "guard.QuotaRule": ("quota_rule", "pk", None),
    "guard.AlertRule": ("alert_rule", "pk", None),
    "guard.Suspension": ("suspension", "pk", None),
    "orders.Status": ("status", "pk", None),
    "orders.Product": ("product", "pk", None),
    "orders.WorkSettings": ("work_settings", "pk", None),
    "orders.Order": ("order", "pk", None),
    "orders.OrderItem": ("order", "order_id", "item"),
    "orders.Comment": ("order", "order_id", "comment"),
    # telephony: every row is written by an action that records it, and the tables have
    # bypass triggers. A token and a call's recording and reviews are events of their call.
    "telephony.TelephonySettings": ("telephony_settings", "pk", None),
    "telephony.Pbx": ("pbx", "pk", None),
    "telephony.SipAccount": ("sip_account", "pk", None),
    "telephony.Call": ("call", "pk", None),
    "telephony.CallToken": ("call", "call_id", None),
    "telephony.Recording": ("call", "call_id", "recording"),
    "telephony.CallReview": ("call", "call_id", "review"),
    # monitoring
    "monitoring.MonitoringPolicy": ("monitoring_policy", "pk", None),
    "monitoring.EnrolmentCode": ("enrolment_code", "pk", None),
    "monitoring.Device": ("device", "pk", None),
}
# Rows that record no decision of anyone's (docs/audit-events.md, "Not recorded, on purpose").
BOOKKEEPING = {
    "orders.IdempotencyRecord": "maps a retry to its order; the order is recorded",
    "orders.StatusChange": "the dashboard's copy of order.status events",
    "accounts.MemberSession": "a browser's bookkeeping; logins, logouts and revocations are events",
    "accounts.SecurityNotice": "the owner's copy of events that need attention",
    "guard.ExportJob": (
        "an export's file and state; order/audit/report.export and export.download are the record"
    ),
    "guard.MemberBaseline": "derived from the events by the worker",
    # telephony: none (a call's token, recording and reviews are audited with the call)
    # monitoring
    "monitoring.ActivitySpan": (
        "the agent's heartbeats merged; reading them is recorded (timeline.view)"
    ),
    "monitoring.Screenshot": (
        "the agent's screenshots; each full view (screenshot.view) and purge is recorded"
    ),
}


def application_models() -> list[str]:
    return sorted(
        m._meta.label
        for m in apps.get_models()
        if m.__module__.startswith("callvault.") and m._meta.app_label != "audit"
    )


def test_every_model_is_either_audited_or_named_as_bookkeeping():
    unclassified = set(application_models()) - set(AUDITED) - set(BOOKKEEPING)
    assert unclassified == set(), "add the model to AUDITED (and record it) or BOOKKEEPING"


def test_every_row_of_an_audited_model_has_its_creation_recorded(owner, operator, order, api_key):
    item = do_add_item(order, Product.objects.get(project=order.project, sku="GIFT"), 1)
    do_add_comment(order, "call after six", author=owner.user)
    do_remove_item(item)  # a removed line still has its history; it is simply not in the table
    # Who may enter: one row of each model, made through its action.
    # <second-factor row>
    do_add_passkey(operator.user, name="key", credential_id="cred", public_key=b"k")
    # <allowed-network row>
    from callvault.accounts.allowlist import do_add_network

    do_add_network(owner.project, "192.0.2.0/24", "Office", membership=operator)
    # <support-grant row>
    # <suspension row>
    from callvault.guard.quotas import do_suspend_member

    do_suspend_member(operator, kind="card_open", limit=60, count=65)
    from callvault.accounts.support import do_grant_support_access

    do_grant_support_access(owner.project, hours=1, reason="a crash", person="Oleg", acting=owner)
    # <monitoring rows>: an enrolment code and the device it enrolled (the policy comes with
    # the project).
    from callvault.monitoring.tests.support import enrol

    enrol(operator)
    # <telephony rows>: settings, a PBX, a SIP account, a call with its token, recording, review.
    from callvault.telephony.tests.call_support import telephony_rows

    telephony_rows(owner, operator, order)
    for label, (object_type, id_attr, key) in AUDITED.items():
        model = apps.get_model(label)
        rows = list(model._default_manager.all())
        assert rows, f"the fixtures made no {label}: the check would prove nothing"
        for row in rows:
            events = AuditEvent.objects.filter(
                object_type=object_type, object_id=str(getattr(row, id_attr))
            )
            mentions = [e for e in events if key is None or f"{key} {row.pk}" in e.changes]
            assert mentions, f"{label} {row.pk} has no event"


def test_an_order_created_with_lines_names_each_line(order):
    event = AuditEvent.objects.get(action="order.create", object_id=str(order.pk))
    (line,) = OrderItem.objects.filter(order=order)
    assert event.changes[f"item {line.pk}"] == [None, "2 x TEA @ 990.00"]


def test_project_creation_records_its_settings(project):
    event = AuditEvent.objects.get(action="project.create", object_id=str(project.pk))
    assert event.changes["default_region"] == [None, "RU"]
    assert event.changes["time_zone"] == [None, "Europe/Moscow"]
    assert event.changes["mask_visible_digits"] == [None, 2]
    assert "duplicate_window_hours" in event.changes


def test_each_project_setting_is_recorded_before_and_after(project):
    window = project.duplicate_window_hours
    do_update_project(
        project,
        name="Tea shop",
        default_region="KZ",
        time_zone="Asia/Almaty",
        mask_visible_digits=0,
        duplicate_window_hours=24,
        thank_you_url="https://tea.example/thanks",
    )
    event = AuditEvent.objects.get(action="project.update")
    assert event.changes == {
        "name": ["Shop alpha", "Tea shop"],
        "default_region": ["RU", "KZ"],
        "time_zone": ["Europe/Moscow", "Asia/Almaty"],
        "mask_visible_digits": [2, 0],
        "duplicate_window_hours": [window, 24],
        "thank_you_url": ["", "https://tea.example/thanks"],
    }


def test_default_statuses_and_work_rules_are_recorded_in_full(project):
    new = Status.objects.get(project=project, code="new")
    event = AuditEvent.objects.get(action="status.create", object_id=str(new.pk))
    assert event.changes["queue_class"] == [None, "new"]
    assert event.changes["is_initial"] == [None, True]
    work = WorkSettings.objects.get(project=project)
    created = AuditEvent.objects.get(action="work_settings.create", object_id=str(work.pk))
    assert created.changes["status_after_max_attempts"] == [None, "unreachable"]
    assert created.changes["max_attempts"] == [None, work.max_attempts]


def test_a_script_edit_that_only_changes_a_number_is_recorded_with_it_redacted(project, phone):
    work = WorkSettings.objects.get(project=project)
    do_update_work_settings(work, script=f"Offer the gift. Managers: {phone[0]}")
    do_update_work_settings(work, script=f"Offer the gift. Managers: {phone[0]}9")
    events = list(AuditEvent.objects.filter(action="work_settings.update").order_by("id"))
    assert len(events) == 2
    assert events[1].changes["script"] == ["Offer the gift. Managers: [redacted]"] * 2


def test_work_rules_changes_are_recorded_field_by_field(project):
    work = WorkSettings.objects.get(project=project)
    do_update_work_settings(work, calling_hours_start=time(10, 0), lock_minutes=20)
    event = AuditEvent.objects.get(action="work_settings.update")
    assert event.changes["calling_hours_start"][1] == "10:00:00"
    assert event.changes["lock_minutes"][1] == 20


def test_the_actor_name_outlives_the_deleted_user(operator, order):
    Order.objects.filter(pk=order.pk).update(assigned_to=operator.user)
    login(operator).get(f"/p/{operator.project.slug}/orders/{order.pk}/")
    user_id = operator.user_id
    User.objects.filter(pk=user_id).delete()
    event = AuditEvent.objects.get(action="order.view")
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("member", str(user_id), "bob")


def test_each_actor_kind_has_a_named_constructor_within_the_columns():
    actors = {
        Actor.member(User(pk=7, username="bob")): ("member", "7", "bob"),
        Actor.api_key(3, "Landing"): ("api_key", "3", "API key Landing"),
        Actor.system("vault rotate"): ("system", "", "system: vault rotate"),
        Actor.pbx(2, "office"): ("pbx", "2", "PBX office"),
        Actor.agent(9, "desk-12"): ("agent", "9", "agent desk-12"),
        Actor.support(4, "Ann"): ("support", "4", "support Ann"),
    }
    for actor, expected in actors.items():
        assert (actor.kind, actor.id, actor.name) == expected
        assert actor.kind in ActorKind.values
    assert (SYSTEM.name, ANONYMOUS.kind) == ("system", "anonymous")


def test_a_long_actor_name_is_cut_to_the_column_not_refused(db):
    with acting_as(Actor.agent(1, "d" * 300)):
        event = record_event("test.thing", project_id=None)
    assert event.actor_name == "agent " + "d" * 194


def test_an_api_key_change_is_recorded_under_the_keys_name(project, order, api_key):
    response = Client().post(
        f"/api/v1/orders/{order.pk}/status",
        {"status": "accepted"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="order.status")
    assert (event.actor_kind, event.actor_name) == ("api_key", "API key Landing")


def test_a_command_records_as_the_system_named_after_it_under_one_request_id(
    own_ring, project, order
):
    call_command("vault", "rotate", "--batch", "1")
    events = list(AuditEvent.objects.filter(action__startswith="vault.").order_by("id"))
    assert [e.action for e in events] == ["vault.key_add", "vault.rotate"]
    assert {(e.actor_kind, e.actor_name) for e in events} == {("system", "system: vault rotate")}
    assert len({e.request_id for e in events}) == 1 and events[0].request_id
    assert events[1].extra["ids"] == [order.pk]
    assert current().actor == SYSTEM  # the command's context ended with it


@task()
def record_in_a_task() -> None:
    """A task that records something, as housekeeping tasks will."""
    record_event("test.thing", project_id=None)


def test_a_task_records_as_the_system_named_after_the_task(db):
    connect_task_signals()  # the audit app's ready() does this in a running installation
    result = record_in_a_task.enqueue()
    event = AuditEvent.objects.get(action="test.thing")
    assert (event.actor_kind, event.actor_name) == ("system", "system: task record_in_a_task")
    assert event.request_id == str(result.id)[:64]
    assert current().actor == SYSTEM


def test_one_request_groups_its_events_under_one_request_id(owner, order):
    client = login(owner)
    cancelled = Status.objects.get(project=order.project, code="cancelled")
    response = client.post(
        f"/p/{owner.project.slug}/orders/{order.pk}/status/",
        {"status": cancelled.pk, "reason": "changed their mind", "version": order.version},
    )
    assert response.status_code == 302
    status = AuditEvent.objects.get(action="order.status")
    comment = AuditEvent.objects.get(action="order.comment")
    assert status.request_id == comment.request_id == response["X-Request-ID"]


# --- The catalogue (docs/audit-events.md) lists every action the code records. ---

ACTION = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
RECORDING_CALLS = re.compile(r"record")  # record_event, _record, _record_ring, ...


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def actions_in_code() -> set[str]:
    """Action names passed to a recording call or as `action=`, and the queue's SQL one."""
    found: set[str] = set()
    for path in (ROOT / "callvault").rglob("*.py"):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            if RECORDING_CALLS.search(_call_name(node)) and node.args:
                found.update(_constants(node.args[0]))
            for kw in node.keywords:
                if kw.arg == "action":
                    found.update(_constants(kw.value))
            if len(node.args) >= 4 and _call_name(node) == "_finish":
                found.update(_constants(node.args[3]))
        # An event inserted by SQL (the queue's claim on PostgreSQL).
        found.update(re.findall(r"'([a-z_]+\.[a-z_]+)'", source) if "INSERT INTO" in source else [])
    return {name for name in found if ACTION.match(name) and not name.startswith("test.")}


def catalogued() -> tuple[set[str], set[str]]:
    """(documented actions, reserved names for features not built yet)."""
    text = CATALOGUE.read_text()
    body, _, reserved = text.partition("## Reserved for features being built")
    names = set(re.findall(r"^\| `([a-z0-9_.]+)`", body, re.M))
    return {n for n in names if "." in n}, set(re.findall(r"`([a-z0-9_]+\.[a-z0-9_]+)`", reserved))


def test_every_recorded_action_is_in_the_catalogue():
    documented, _ = catalogued()
    assert actions_in_code() - documented == set()


def test_every_catalogued_action_is_recorded_somewhere():
    documented, reserved = catalogued()
    assert len(actions_in_code()) > 30  # the scan works
    assert documented - actions_in_code() == set()
    assert documented & reserved == set()
