"""Enrolment codes: one use, an expiry, a throttle, the member's networks; concurrent use."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from callvault.accounts.allowlist import do_add_network
from callvault.audit.models import AuditEvent
from callvault.lib.errors import FieldErrors
from callvault.monitoring.actions import (
    CODE_ALPHABET,
    EnrolmentRefused,
    do_create_enrolment_code,
    do_enrol_device,
    find_code,
    hash_token,
    normalise_code,
)
from callvault.monitoring.models import Device, EnrolmentCode

ENROL = "/agent/v1/enrol"


def enrol_request(code: str, **more: str) -> tuple[int, dict[str, Any]]:
    body = {"code": code, "hostname": "desk-7", "platform": "windows", "agent_version": "0.1.0"}
    response = Client().post(ENROL, json.dumps({**body, **more}), content_type="application/json")
    return response.status_code, response.json()


def test_a_code_enrols_one_device_and_only_once(operator):
    _row, code = do_create_enrolment_code(operator)
    status, body = enrol_request(code)
    assert status == 201
    device = Device.objects.get(pk=body["device_id"])
    assert (device.membership, device.hostname, device.platform) == (operator, "desk-7", "windows")
    assert body["token"].startswith("cvd_") and device.token_hash == hash_token(body["token"])
    assert body["policy"]["version"] == 1
    again, refused = enrol_request(code)
    assert again == 400
    assert refused["errors"] == {"code": "unknown, used or expired code"}
    assert Device.objects.count() == 1
    register = AuditEvent.objects.get(action="device.register")
    assert (register.actor_kind, register.actor_name) == ("agent", "agent desk-7")
    assert AuditEvent.objects.get(action="enrolment_code.refused").extra == {"reason": "used"}


def test_a_code_is_shown_once_and_kept_only_as_a_keyed_hash(operator):
    row, code = do_create_enrolment_code(operator)
    assert len(code) == 11 and code[5] == "-"
    assert set(code.replace("-", "")) <= set(CODE_ALPHABET)
    assert normalise_code(code) not in row.code_hash and code not in row.code_hash
    event = AuditEvent.objects.get(action="enrolment_code.create")
    assert code not in json.dumps(event.changes) and event.changes["code"] == "changed"


def test_a_code_typed_loosely_still_works(operator):
    _row, code = do_create_enrolment_code(operator)
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert find_code(typed) is not None


def test_an_expired_code_is_refused(operator):
    row, code = do_create_enrolment_code(operator, hours=1)
    EnrolmentCode.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    status, body = enrol_request(code)
    assert status == 400 and "code" in body["errors"]
    assert not Device.objects.exists()
    assert AuditEvent.objects.filter(action="enrolment_code.refused").get().extra == {
        "reason": "expired"
    }


def test_an_unknown_code_is_refused_naming_code_and_wrong_codes_are_throttled(db):
    for _attempt in range(10):
        status, body = enrol_request("ABCDE-FGHJK")
        assert status == 400 and body["detail"].startswith("code:")
    status, _body = enrol_request("ABCDE-FGHJK")
    assert status == 429
    event = AuditEvent.objects.filter(action="enrolment_code.refused").first()
    assert event is not None and event.project_id is None
    assert "ABCDE" not in json.dumps(event.extra)


def test_a_missing_code_or_a_bad_field_is_named(operator):
    status, body = enrol_request("")
    assert status == 401 and "code" in body["errors"]  # no credential at all
    _row, code = do_create_enrolment_code(operator)
    status, body = enrol_request(code, platform="amiga")
    assert status == 422 and "platform" in body["errors"]
    assert EnrolmentCode.objects.get().used_at is None  # the code is not used up


def test_the_members_networks_apply_to_enrolment(operator, project):
    do_add_network(project, "192.0.2.0/24", "Office", membership=operator)
    _row, code = do_create_enrolment_code(operator)
    status, _body = enrol_request(code)
    assert status == 403
    assert EnrolmentCode.objects.get().used_at is None


def test_only_a_member_who_manages_may_make_a_code(owner, supervisor, operator, outsider):
    do_create_enrolment_code(operator, acting=owner)
    do_create_enrolment_code(owner, acting=owner)  # oneself
    for acting, target in ((supervisor, operator), (operator, operator), (outsider, operator)):
        with pytest.raises(FieldErrors):
            do_create_enrolment_code(target, acting=acting)
    with pytest.raises(FieldErrors):
        do_create_enrolment_code(operator, hours=24 * 8)


def test_the_command_prints_only_the_code(operator, capsys):
    call_command("monitoring", "enrolment-code", "--project", "alpha", "--username", "bob")
    printed = capsys.readouterr().out.strip()
    assert len(printed.splitlines()) == 1
    row = find_code(printed)
    assert row is not None and row.membership == operator
    event = AuditEvent.objects.get(action="enrolment_code.create")
    assert event.actor_name == "system: monitoring enrolment-code"


@pytest.mark.django_db(transaction=True)
def test_two_agents_with_one_code_at_once_one_wins(operator):
    """Concurrent use: on PostgreSQL the conditional UPDATE lets exactly one transaction
    consume the code (SQLite serialises the two writers, with the same outcome)."""
    _row, code = do_create_enrolment_code(operator)
    row = find_code(code)
    assert row is not None
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use(name: str) -> None:
        try:
            barrier.wait(timeout=10)
            do_enrol_device(row, hostname=name, platform="macos", agent_version="0.1.0")
            outcomes.append("enrolled")
        except EnrolmentRefused as refused:
            outcomes.append(refused.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=use, args=(f"pc-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["enrolled", "used"], connection.vendor
    assert Device.objects.count() == 1
