"""A PC whose clock is far ahead: its heartbeats are refused with how far ahead it is and
the server's time (the agent corrects its clock from the Date header), and the silence
alert counts only accepted heartbeats, so such an agent raises it instead of going quiet."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from django.utils import timezone

from callvault.audit.context import Actor, acting_as
from callvault.audit.recorder import record_event
from callvault.monitoring.models import ActivitySpan, Device
from callvault.monitoring.silence import check_silent_agents
from callvault.monitoring.tests.support import (
    agent,
    beat,
    enrol,
    image_bytes,
    post_beats,
    post_shot,
)

AHEAD = re.compile(r"^in the future: the PC's clock is (\d+) s ahead$")


@pytest.fixture
def device(operator: Any) -> tuple[Device, str]:
    return enrol(operator)


def server_time(answer: Any) -> datetime:
    return datetime.fromisoformat(answer.json()["server_time"].replace("Z", "+00:00"))


def test_a_heartbeat_from_a_fast_clock_says_how_fast_and_the_servers_time(device):
    response = post_beats(device[1], [beat(1, timezone.now() + timedelta(minutes=15))])
    assert response.status_code == 422
    errors = response.json()["errors"]
    found = AHEAD.match(errors["heartbeats[0].at"])
    assert found is not None and 895 <= int(found.group(1)) <= 900
    assert abs(server_time(response) - timezone.now()) < timedelta(seconds=5)


def test_a_screenshot_from_a_fast_clock_says_the_same(device):
    response = post_shot(device[1], image_bytes(), taken_at=timezone.now() + timedelta(hours=1))
    assert response.status_code == 422
    assert AHEAD.match(response.json()["errors"]["taken_at"])
    assert abs(server_time(response) - timezone.now()) < timedelta(seconds=5)


def test_every_batch_answer_carries_the_servers_time(device):
    response = post_beats(device[1], [beat(1, timezone.now() - timedelta(seconds=5))])
    assert response.status_code == 200
    assert response.json()["server_time"].endswith("Z")
    assert abs(server_time(response) - timezone.now()) < timedelta(seconds=5)


def test_a_fast_clock_raises_the_silence_alert(operator, device):
    """The review's finding: every heartbeat refused, yet policy reads kept "last seen"
    fresh, so the alert never fired."""
    dev, token = device
    assert post_beats(token, [beat(1, timezone.now() + timedelta(minutes=15))]).status_code == 422
    long_ago = timezone.now() - timedelta(minutes=30)
    Device.objects.filter(pk=dev.pk).update(created_at=long_ago, last_seen_at=long_ago)
    assert agent(token).get("/agent/v1/policy").status_code == 200  # moves "last seen" only
    with acting_as(Actor.member(operator.user)):
        record_event("order.view", project_id=operator.project_id, object_type="order")
    assert not ActivitySpan.objects.exists()
    assert check_silent_agents() == 1


def test_only_accepted_heartbeats_move_the_last_heartbeat(device):
    dev, token = device
    assert agent(token).get("/agent/v1/policy").status_code == 200
    post_beats(token, [beat(1, timezone.now() + timedelta(minutes=15))])
    dev.refresh_from_db()
    assert dev.last_seen_at is not None and dev.last_heartbeat_at is None
    post_beats(token, [beat(1, timezone.now() - timedelta(seconds=5))])
    dev.refresh_from_db()
    first = dev.last_heartbeat_at
    assert first is not None
    # A retried batch (nothing new) still says the agent is alive with a sane clock.
    post_beats(token, [beat(1, timezone.now() - timedelta(seconds=5))])
    dev.refresh_from_db()
    assert dev.last_heartbeat_at is not None and dev.last_heartbeat_at >= first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.http
def test_the_server_puts_its_date_on_every_agent_answer(tmp_path):
    """The agent corrects its clock from the Date header: gunicorn (`callvault serve`, and
    nginx in front of it in production) sets it on every answer, exactly once (the
    application adds none, or gunicorn would send two)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    env.update({"CALLVAULT_DATA_DIR": str(tmp_path), "CALLVAULT_DEBUG": "1"})
    command = [sys.executable, "-m", "callvault.cli"]
    subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [*command, "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        [*command, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        answers = []
        for method, path in (("GET", "/agent/v1/policy"), ("POST", "/agent/v1/heartbeats")):
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    connection.request(method, path, headers={"Authorization": "Bearer nope"})
                    answer = connection.getresponse()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
            answers.append((answer.status, answer.headers.get_all("Date"), answer.read()))
            connection.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=15)
    for status, dates, body in answers:
        assert status == 401 and json.loads(body)["detail"]
        assert dates is not None and len(dates) == 1
        assert abs(parsedate_to_datetime(dates[0]) - timezone.now()) < timedelta(seconds=30)
