"""Refused agent requests are recorded without letting the record become the flood: one
event per address, device and reason in each ten-minute window, counting the refusals it
stands for."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from callvault.audit.models import AuditEvent
from callvault.monitoring import throttle
from callvault.monitoring.actions import REFUSAL_WINDOW_SECONDS, do_revoke_device
from callvault.monitoring.tests.support import agent, enrol


@pytest.fixture
def clock(monkeypatch: Any) -> SimpleNamespace:
    """The throttle's clock, moved by hand (only the throttle's)."""
    now = SimpleNamespace(value=time.time())
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: now.value))
    return now


def refused() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="device.refused").order_by("id"))


def test_a_flood_of_bad_tokens_writes_one_event_per_window(db, clock):
    """The review's finding: 200 requests with a bad token wrote 200 audit rows."""
    client = Client(HTTP_AUTHORIZATION="Bearer nope")
    assert {client.get("/agent/v1/policy").status_code for _ in range(200)} == {401}
    (first,) = refused()
    assert first.extra == {"reason": "unknown", "ip": "127.0.0.1", "refusals": 1}
    clock.value += REFUSAL_WINDOW_SECONDS
    assert client.get("/agent/v1/policy").status_code == 401
    later = refused()[-1]
    # The next window's first refusal counts itself and the 199 not recorded before it.
    assert len(refused()) == 2 and later.extra["refusals"] == 200
    clock.value += REFUSAL_WINDOW_SECONDS
    client.get("/agent/v1/policy")
    assert refused()[-1].extra["refusals"] == 1


def test_each_address_has_its_own_window(db, clock):
    for address in ("192.0.2.10", "192.0.2.11", "192.0.2.10"):
        Client(HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR=address).get("/agent/v1/policy")
    assert [e.extra["ip"] for e in refused()] == ["192.0.2.10", "192.0.2.11"]


def test_a_revoked_device_that_keeps_knocking_is_throttled_too(operator, clock):
    device, token = enrol(operator)
    do_revoke_device(device)
    for _ in range(5):
        assert agent(token).get("/agent/v1/policy").status_code == 401
    # A bad token from the same address is another kind: recorded on its own.
    Client(HTTP_AUTHORIZATION="Bearer nope").get("/agent/v1/policy")
    events = refused()
    assert [(e.object_id, e.extra["reason"]) for e in events] == [
        (str(device.pk), "revoked"),
        ("", "unknown"),
    ]
