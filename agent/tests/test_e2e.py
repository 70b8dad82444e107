"""End to end: the real agent (a subprocess) on a real X server (Xvfb) against a real callvault
server (a subprocess with its own data folder), read back through the server's own commands.

Skips with the reason when Xvfb, the X tools or the callvault command are missing, unless
CALLVAULT_E2E_STRICT=1 (CI), where that is a failure.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import harness
from callvault_agent.api import Client
from callvault_agent.notice import Notifier
from callvault_agent.platforms import Window
from callvault_agent.policy import parse_policy
from callvault_agent.queue import Outbox
from callvault_agent.runner import Agent
from conftest import unavailable
from test_runner import Desk

pytestmark = [pytest.mark.xvfb, pytest.mark.e2e]

HEARTBEAT = 2  # seconds
IDLE = 30  # the server's lowest idle_seconds
SCALE = 0.5
REDACTED_TITLE = harness.WINDOW_TITLE.replace("4242", "[redacted]")
OUTAGE_TITLE = "callvault e2e outage"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Server]:
    if harness.callvault_command() is None:
        unavailable("the callvault command is not installed beside this Python (pip install -e .)")
    srv = harness.Server(data_dir=tmp_path_factory.mktemp("callvault-server"))
    srv.setup()
    srv.set_policy(
        heartbeat_seconds=HEARTBEAT,
        idle_seconds=IDLE,
        window_titles=True,
        redact_patterns="4242",
        screenshots_per_interval=[20, 20],
        screenshot_interval_seconds=60,
        screenshot_scale=SCALE,
        screenshot_format="webp",
        screenshot_quality=80,
        working_hours=False,
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def spans(server: harness.Server) -> list[dict[str, Any]]:
    """Today's spans (UTC days; yesterday's too, for a run across midnight)."""
    today = datetime.now(UTC).date()
    found: list[dict[str, Any]] = []
    for day in (today - timedelta(days=1), today):
        found += server.spans(day.isoformat())
    return found


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def close_to(pixel: object, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(pixel, tuple), pixel
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def test_the_agent_reports_activity_and_screenshots_and_loses_nothing_across_a_restart(
    desktop: harness.Desktop, server: harness.Server, tmp_path: Path
) -> None:
    agent = harness.AgentProcess(home=tmp_path / "agent", env=desktop.env)

    # Enrolment: the token lands in a 0600 file and is never printed.
    code = server.enrolment_code()
    done = agent.cli("enroll", "--server", server.url, "--code", code, "--hostname", "e2e-pc")
    assert done.returncode == 0, done.stdout + done.stderr
    token_file = agent.home / "config" / "token"
    token = token_file.read_text().strip()
    assert token.startswith("cvd_")
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token not in done.stdout + done.stderr
    # The same code again is refused.
    again = agent.cli("enroll", "--server", server.url, "--code", code)
    assert again.returncode == 2 and "code" in again.stderr

    desktop.idle_reset()
    agent.start("--max-backoff", "4", "--notice-minutes", "1")
    try:
        # A screenshot arrives, decodes, has the screen's size times the scale, shows the drawing.
        image_path = tmp_path / "latest.img"

        def latest() -> dict[str, Any] | None:
            try:
                return server.latest_screenshot(image_path)
            except RuntimeError:
                return None

        info = harness.wait_for(latest, 60, "a screenshot on the server", interval=1)
        image = Image.open(io.BytesIO(image_path.read_bytes()))
        assert image.format == "WEBP"
        expected = (round(harness.SCREEN[0] * SCALE), round(harness.SCREEN[1] * SCALE))
        assert image.size == expected
        assert (info["width"], info["height"]) == expected
        rgb = image.convert("RGB")
        corner = rgb.getpixel((expected[0] - 5, expected[1] - 5))
        assert close_to(corner, harness.ROOT_COLOUR), corner
        x, y = harness.WINDOW_GEOMETRY
        inside = rgb.getpixel((int((x + 100) * SCALE), int((y + 100) * SCALE)))
        assert close_to(inside, harness.WINDOW_COLOUR), inside

        # Heartbeats make an active span with the program and the redacted title.
        def active_span() -> dict[str, Any] | None:
            return next(
                (
                    s
                    for s in spans(server)
                    if s["state"] == "active" and s["title"] == REDACTED_TITLE
                ),
                None,
            )

        first_active = harness.wait_for(active_span, 30, "an active span", interval=1)
        assert first_active["app"] == "XTerm"

        # Without input for idle_seconds: an idle span.
        def idle_span() -> dict[str, Any] | None:
            return next((s for s in spans(server) if s["state"] == "idle"), None)

        idle = harness.wait_for(idle_span, IDLE + 30, "an idle span", interval=2)
        assert at(idle["start"]) >= at(first_active["start"]) + timedelta(seconds=IDLE - HEARTBEAT)

        # Input through xdotool: active again, after the idle span.
        desktop.idle_reset()

        def active_after_idle() -> dict[str, Any] | None:
            return next(
                (
                    s
                    for s in spans(server)
                    if s["state"] == "active" and at(s["start"]) > at(idle["start"])
                ),
                None,
            )

        harness.wait_for(active_after_idle, 20, "an active span after the idle one", interval=1)

        # A policy change reaches the running agent through X-Policy-Version.
        server.set_policy(redact_patterns='["4242", "nothing-matches-this"]')
        harness.wait_for(
            lambda: "policy changed" in agent.log(), 20, "the agent to re-read the policy"
        )

        # The server goes down; what happens meanwhile is queued and arrives after the restart.
        server.stop()
        desktop.run("xdotool", "getactivewindow", "set_window", "--name", OUTAGE_TITLE)
        changed = datetime.now(UTC)
        for _ in range(6):  # stay active through the outage
            time.sleep(2)
            desktop.idle_reset()
        desktop.run("xdotool", "getactivewindow", "set_window", "--name", harness.WINDOW_TITLE)
        restored = datetime.now(UTC)
        assert agent.proc is not None and agent.proc.poll() is None, agent.log()[-3000:]
        assert "unreachable" in agent.log()
        server.start()

        def drained() -> bool:
            status = agent.cli("status").stdout
            return "queued: 0 heartbeat(s), 0 screenshot(s)" in status

        harness.wait_for(drained, 60, "the agent's queue to drain after the restart", interval=1)

        def outage_spans() -> list[dict[str, Any]]:
            return [s for s in spans(server) if s["title"] == OUTAGE_TITLE]

        during = harness.wait_for(outage_spans, 20, "the outage's span")
        # One unbroken span from the change to the restore: every heartbeat of the outage
        # arrived (a missing run of them would break it in two, or cut its ends).
        assert len(during) == 1, during
        slack = timedelta(seconds=2 * HEARTBEAT + 1)
        assert at(during[0]["start"]) <= changed + slack, (during, changed)
        assert at(during[0]["end"]) >= restored - slack, (during, restored)
        assert "dropped" not in agent.log()
    finally:
        code_at_exit = agent.stop()
    assert code_at_exit == 0, agent.log()[-3000:]
    assert "monitoring is off" in agent.log()


CLOCK_TITLE = "callvault e2e clock ahead"


def test_heartbeats_stamped_by_a_clock_15_minutes_ahead_reach_the_real_server(
    server: harness.Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent in this process, its wall clock 15 minutes ahead, against the real server:
    what it queued before reaching the server is refused as "in the future" (422), moved by
    the clock's error and accepted; nothing is dropped; what follows is stamped right."""
    ahead = timedelta(minutes=15)
    enrolled = Client(server.url).enrol(server.enrolment_code(), "clock-pc", "linux-x11")
    assert enrolled.status == 201, enrolled.body
    outbox = Outbox(tmp_path / "q.sqlite3")
    agent = Agent(
        Client(server.url, enrolled.body["token"]),
        outbox,
        Desk(window=Window("clockapp", CLOCK_TITLE)),
        policy=parse_policy(enrolled.body["policy"]),
        notifier=Notifier(out=io.StringIO(), desktop=lambda s, b: None),
        wall=lambda: datetime.now(UTC) + ahead,
    )
    agent.policy_due = agent.clock() + 600  # offline so far: nothing has been asked yet
    policy = agent.policy
    assert policy is not None
    before = datetime.now(UTC)
    for _ in range(3):
        agent.record_heartbeat(policy)
        time.sleep(1)
    agent.flush()
    assert outbox.heartbeat_count() == 0
    assert "in its future" in caplog.text and "dropped" not in caplog.text
    assert agent.time.offset is not None  # from now on the server's time
    agent.record_heartbeat(policy)
    agent.flush()
    after = datetime.now(UTC)
    outbox.close()

    (span,) = [s for s in spans(server) if s["title"] == CLOCK_TITLE]
    slack = timedelta(seconds=5)
    # One span of the four heartbeats, at the real time, not 15 minutes ahead.
    assert before - slack <= at(span["start"]) <= before + slack, (span, before)
    assert before + timedelta(seconds=2) <= at(span["end"]) <= after + slack, (span, after)
