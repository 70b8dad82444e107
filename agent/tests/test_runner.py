"""The run loop against a scripted server on 127.0.0.1, on simulated time: what is sent, what is
kept on failures, what is dropped, when the policy is re-read, when nothing is collected."""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callvault_agent.api import Client
from callvault_agent.capture import Shot
from callvault_agent.notice import Notifier
from callvault_agent.platforms import Window
from callvault_agent.policy import Policy, parse_policy
from callvault_agent.queue import Outbox
from callvault_agent.runner import MAX_RETIMES, Agent, Options, Revoked, bad_heartbeat_index
from scripted import POLICY, Answer, Script, iso, parse_iso, scripted_server

HEARTBEATS = "/agent/v1/heartbeats"
SCREENSHOTS = "/agent/v1/screenshots"
POLICY_PATH = "/agent/v1/policy"


@dataclass
class Desk:
    """The platform interface with values the test sets (the X11 one is tested on Xvfb)."""

    idle: float = 0.0
    is_locked: bool = False
    window: Window | None = None
    name: str = "linux-x11"

    def idle_seconds(self) -> float:
        return self.idle

    def locked(self) -> bool:
        return self.is_locked

    def foreground(self) -> Window | None:
        return self.window

    def close(self) -> None:
        pass


class Clock:
    """Monotonic and wall time that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 5000.0)


@dataclass
class World:
    script: Script
    agent: Agent
    clock: Clock
    desk: Desk
    outbox: Outbox
    shots: list[Policy]
    shot_times: list[datetime]

    def run(self, seconds: float) -> None:
        """Let the agent run for `seconds` of simulated time."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + self.agent.step())
        self.agent.step()

    def shot_count(self) -> int:
        return len(self.script.sent(SCREENSHOTS))

    def use_policy(self, **changes: object) -> None:
        """The server's policy changes; the agent reads it at its next step."""
        self.script.policy = {**POLICY, "version": self.script.policy["version"] + 1, **changes}
        self.agent.policy_due = self.clock.now


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    script = Script(clock=clock, wall=clock.wall)
    with scripted_server(script) as url:
        desk = Desk(window=Window("firefox", "Order 12345678 - CRM"))
        outbox = Outbox(tmp_path / "q.sqlite3")
        shots: list[Policy] = []
        shot_times: list[datetime] = []

        def shooter(policy: Policy) -> Shot:
            shots.append(policy)
            shot_times.append(clock.wall())
            return Shot(b"RIFF-fake-webp", "image/webp", 640, 400)

        agent = Agent(
            Client(url, "cvd_test_token", timeout=5),
            outbox,
            desk,
            policy=parse_policy(POLICY),
            notifier=Notifier(out=io.StringIO(), desktop=lambda s, b: None),
            options=Options(backoff_base=2, backoff_cap=30),
            clock=clock,
            wall=clock.wall,
            shooter=shooter,
            rng=random.Random(3),
        )
        agent.policy_due = clock.now + 600  # the policy is fresh
        yield World(script, agent, clock, desk, outbox, shots, shot_times)
        outbox.close()


def test_heartbeats_carry_state_and_the_redacted_window(world: World) -> None:
    world.run(11)
    sent = world.script.sent(HEARTBEATS)
    beats = [b for r in sent for b in r.json()["heartbeats"]]
    assert [b["seq"] for b in beats] == [1, 2, 3]
    assert beats[0] == {
        "seq": 1,
        "at": "2026-11-30T09:00:00.000Z",
        "state": "active",
        "app": "firefox",
        "title": "Order [redacted] - CRM",
    }
    assert sent[0].headers["Authorization"] == "Bearer cvd_test_token"
    assert world.outbox.heartbeat_count() == 0


def test_idle_and_locked_states(world: World) -> None:
    world.desk.idle = 120
    world.run(1)
    world.desk.is_locked = True
    world.run(5)
    beats = [b for r in world.script.sent(HEARTBEATS) for b in r.json()["heartbeats"]]
    assert [b["state"] for b in beats] == ["idle", "locked"]
    assert beats[1]["app"] is None and beats[1]["title"] is None


def test_window_titles_off_withholds_program_and_title(world: World) -> None:
    world.use_policy(window_titles=False)
    world.run(1)
    beat = world.script.sent(HEARTBEATS)[0].json()["heartbeats"][0]
    assert (beat["app"], beat["title"]) == (None, None)


def test_on_5xx_and_lost_connections_everything_is_kept_and_sent_later_in_order(
    world: World,
) -> None:
    world.script.then(
        HEARTBEATS,
        Answer(500, {"detail": "boom"}),
        Answer(None),
        Answer(503, {"detail": "maintenance"}),
    )
    world.run(6)
    assert world.outbox.heartbeat_count() >= 2
    assert world.agent.heartbeat_backoff.failures >= 1
    world.run(120)
    assert world.outbox.heartbeat_count() == 0
    seqs = world.script.seqs()
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing twice, in order
    assert len(seqs) == 26  # one every 5 s over 126 s, from 0


def test_retries_back_off_exponentially(world: World) -> None:
    world.script.then(HEARTBEATS, *[Answer(502, {"detail": "down"})] * 50)
    world.run(200)
    times = [r.at for r in world.script.sent(HEARTBEATS)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The n-th wait is within [c/2, c] for c = min(30, 2 * 2**(n-1)): 1-2 s, 2-4, ... 15-30.
    for n, gap in enumerate(gaps, start=1):
        ceiling = min(30, 2 * 2 ** (n - 1))
        assert ceiling / 2 - 1e-6 <= gap <= ceiling + 1e-6, (n, gaps)
    assert world.outbox.heartbeat_count() == 41  # all kept


def test_an_item_the_server_names_is_dropped_and_the_rest_sent(world: World) -> None:
    for _ in range(3):
        world.agent.record_heartbeat(world.agent.policy)  # type: ignore[arg-type]
    world.script.then(
        HEARTBEATS, Answer(422, {"detail": "heartbeats[1].state: one of active, idle, locked"})
    )
    world.agent.flush()
    assert world.script.seqs() == [1, 3]
    assert world.outbox.heartbeat_count() == 0


def test_an_unnamed_refusal_is_found_by_sending_one_at_a_time(world: World) -> None:
    for _ in range(4):
        world.agent.record_heartbeat(world.agent.policy)  # type: ignore[arg-type]
    world.script.then(
        HEARTBEATS,
        Answer(400, {"detail": "bad batch"}),
        Answer(200, {"accepted": 1, "last_seq": 1}),
        Answer(400, {"detail": "bad item"}),
    )
    world.agent.flush()
    sizes = [len(r.json()["heartbeats"]) for r in world.script.sent(HEARTBEATS)]
    assert sizes[:3] == [4, 1, 1]
    assert world.outbox.heartbeat_count() == 0
    assert world.script.seqs()[-2:] == [3, 4]  # back to whole batches after the drop


def test_401_stops_the_agent(world: World) -> None:
    world.script.then(HEARTBEATS, Answer(401, {"detail": "this device was revoked"}))
    with pytest.raises(Revoked, match="revoked"):
        world.run(1)
    assert world.outbox.heartbeat_count() == 1  # kept: nothing is thrown away on the PC


@pytest.mark.parametrize("status", [403, 429])
def test_refused_address_or_rate_keeps_items_and_waits(world: World, status: int) -> None:
    world.script.then(HEARTBEATS, Answer(status, {"detail": "not now"}, {"Retry-After": "40"}))
    world.run(1)
    assert world.outbox.heartbeat_count() == 1
    assert world.agent.heartbeat_backoff.wait() >= 39
    world.run(45)
    assert world.outbox.heartbeat_count() == 0
    assert world.script.seqs()[0] == 1


def test_screenshots_are_posted_as_multipart_and_kept_on_5xx(world: World) -> None:
    world.outbox.add_screenshot(
        taken_at="2026-11-30T09:00:00.000Z", width=640, height=400, mime="image/webp", image=b"IMG"
    )
    world.script.then(SCREENSHOTS, Answer(500, {"detail": "disk full"}))
    world.agent.flush()
    assert world.outbox.screenshot_count() == 1
    world.run(10)
    assert world.outbox.screenshot_count() == 0
    form = world.script.sent(SCREENSHOTS)[-1].form()
    assert form["image"] == b"IMG"
    assert form["width"] == b"640" and form["height"] == b"400"
    assert form["taken_at"] == b"2026-11-30T09:00:00.000Z"
    first = world.script.sent(SCREENSHOTS)[0].form()["client_id"]
    assert form["client_id"] == first  # the retry is recognisable as the same screenshot


@pytest.mark.parametrize("status", [413, 415, 422])
def test_a_screenshot_refused_for_good_is_dropped(world: World, status: int) -> None:
    world.outbox.add_screenshot(taken_at="t", width=1, height=1, mime="image/webp", image=b"x")
    world.outbox.add_screenshot(taken_at="t", width=1, height=1, mime="image/webp", image=b"y")
    world.script.then(SCREENSHOTS, Answer(status, {"detail": "image: no"}))
    world.agent.flush()
    assert world.outbox.screenshot_count() == 0
    assert len(world.script.sent(SCREENSHOTS)) == 2


def test_a_new_policy_version_in_a_reply_makes_it_read_the_policy(world: World) -> None:
    world.script.policy = {**POLICY, "version": 2, "heartbeat_seconds": 10}
    world.run(6)  # the first heartbeat's reply says version 2
    assert len(world.script.sent(POLICY_PATH)) == 1
    assert world.agent.policy is not None and world.agent.policy.heartbeat_seconds == 10


def test_the_policy_is_read_again_every_ten_minutes(world: World) -> None:
    world.run(60 * 25)
    assert len(world.script.sent(POLICY_PATH)) == 2  # at 10 and 20 minutes


def test_nothing_is_collected_outside_working_hours(world: World) -> None:
    hours = {"zone": "UTC", "days": [1], "start": "09:10", "end": "09:20"}
    world.use_policy(
        working_hours=hours, screenshots_per_interval=[5, 5], screenshot_interval_seconds=60
    )
    world.run(30 * 60)  # 09:00-09:30
    beats = [b["at"] for r in world.script.sent(HEARTBEATS) for b in r.json()["heartbeats"]]
    assert beats[0] == "2026-11-30T09:10:00.000Z"
    assert beats[-1] == "2026-11-30T09:19:55.000Z"
    assert len(beats) == 120
    assert len(world.shot_times) == 50  # 5 in each of the 10 minutes inside the hours
    assert all("09:10" <= f"{t:%H:%M}" < "09:20" for t in world.shot_times)


def test_a_server_ahead_of_the_queue_gets_the_items_renumbered(world: World) -> None:
    world.script.last_seq = 500  # a queue file lost while the device kept its token
    world.run(6)
    assert world.script.seqs() == [1, 501, 502]
    assert world.outbox.heartbeat_count() == 0


def test_screenshots_per_interval_stay_within_bounds(world: World) -> None:
    world.use_policy(
        screenshots_per_interval=[1, 3], screenshot_interval_seconds=600, heartbeat_seconds=300
    )
    counts = []
    for _ in range(12):
        before = len(world.shots)
        world.run(600)
        counts.append(len(world.shots) - before)
    assert all(1 <= c <= 3 for c in counts[1:]), counts
    assert len(set(counts)) > 1  # random, not fixed
    assert world.shot_count() == len(world.shots)


def test_no_screenshot_of_a_locked_screen(world: World) -> None:
    world.use_policy(screenshots_per_interval=[3, 3], screenshot_interval_seconds=60)
    world.desk.is_locked = True
    world.run(300)
    assert world.shots == []


def test_a_full_screenshot_queue_stops_capturing_but_drops_nothing(world: World) -> None:
    world.agent.options.max_queue_bytes = 10
    world.script.then(SCREENSHOTS, *[Answer(503, {"detail": "down"})] * 100)
    world.use_policy(screenshots_per_interval=[3, 3], screenshot_interval_seconds=60)
    world.run(300)
    assert world.outbox.screenshot_count() == 1  # 14 bytes: the cap stops the next ones


def test_the_failing_item_is_found_in_a_pydantic_style_location_too() -> None:
    body = {"detail": [{"loc": ["body", "heartbeats", 2, "at"], "msg": "bad"}]}
    assert bad_heartbeat_index(body) == 2
    assert bad_heartbeat_index({"detail": "heartbeats[7].seq: a positive whole number"}) == 7
    assert bad_heartbeat_index({"detail": "nothing"}) is None


def test_after_a_long_pause_screenshots_do_not_come_in_a_burst(world: World) -> None:
    world.use_policy(screenshots_per_interval=[3, 3], screenshot_interval_seconds=60)
    world.run(60)
    before = len(world.shots)
    world.clock.now += 600  # the PC slept for ten minutes
    world.agent.step()
    assert len(world.shots) == before  # a fresh interval starts now
    world.run(60)
    assert len(world.shots) == before + 3


# An answer that is not callvault's must not delete anything (security review).

PORTAL = b"<html><body>Maintenance: back soon</body></html>"


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, raw=PORTAL, content_type="text/html"),
        Answer(200, {}),
        Answer(200, {"accepted": "3", "last_seq": 3}),
        Answer(302, None, {"Location": "https://portal.example/login"}),
    ],
    ids=["html-page", "empty-json", "wrong-shape", "redirect"],
)
def test_an_answer_that_is_not_the_servers_keeps_the_heartbeats(
    world: World, answer: Answer, caplog: pytest.LogCaptureFixture
) -> None:
    world.script.skew = timedelta(hours=-5)  # the portal's clock must not move ours
    for _ in range(3):
        world.agent.record_heartbeat(world.agent.policy)  # type: ignore[arg-type]
    world.script.then(HEARTBEATS, answer)
    world.agent.flush()
    assert world.outbox.heartbeat_count() == 3  # kept, retried after the back-off
    assert world.agent.heartbeat_backoff.failures == 1
    assert "3 heartbeat(s) and 0 screenshot(s) kept" in caplog.text
    assert world.agent.time.offset is None
    world.script.skew = timedelta(0)
    world.run(5)
    assert world.outbox.heartbeat_count() == 0
    assert world.script.seqs()[:3] == [1, 2, 3]


def test_a_screenshot_answer_that_is_not_the_servers_keeps_the_screenshot(
    world: World,
) -> None:
    world.outbox.add_screenshot(
        taken_at="2026-11-30T09:00:00.000Z", width=1, height=1, mime="image/webp", image=b"x"
    )
    world.script.then(SCREENSHOTS, Answer(201, raw=PORTAL, content_type="text/html"))
    world.agent.flush()
    assert world.outbox.screenshot_count() == 1
    world.run(5)
    assert world.outbox.screenshot_count() == 0
    assert len(world.script.sent(SCREENSHOTS)) == 2


# A PC clock ahead of the server's: items are moved, not dropped (security review).

AHEAD = timedelta(minutes=15)  # the server refuses more than 10 minutes in its future


def beats_sent(world: World) -> list[dict[str, object]]:
    return [
        b
        for r in world.script.sent(HEARTBEATS)
        if r.headers.get("X-Answered") == "200"
        for b in r.json()["heartbeats"]
    ]


def moment(value: object) -> datetime:
    parsed = parse_iso(value)
    assert parsed is not None, value
    return parsed


def queue_while_offline(world: World, count: int) -> list[str]:
    """Heartbeats stamped by the PC's clock before the server was reached."""
    stamps = []
    for _ in range(count):
        world.agent.record_heartbeat(world.agent.policy)  # type: ignore[arg-type]
        stamps.append(world.clock.wall())
        world.clock.now += 5
    return [iso(stamp - AHEAD) for stamp in stamps]


@pytest.mark.parametrize("server_time", [True, False], ids=["server_time", "date-header"])
def test_heartbeats_from_a_clock_ahead_are_moved_by_its_error_and_accepted(
    world: World, server_time: bool, caplog: pytest.LogCaptureFixture
) -> None:
    world.script.skew = -AHEAD
    world.script.server_time = server_time
    expected = queue_while_offline(world, 3)
    world.agent.flush()
    refused, accepted = world.script.sent(HEARTBEATS)
    assert (refused.headers["X-Answered"], accepted.headers["X-Answered"]) == ("422", "200")
    beats = beats_sent(world)
    assert [b["seq"] for b in beats] == [1, 2, 3]  # nothing dropped, seq unchanged
    # Moved by the clock's error: exactly with server_time; from the Date header (whole
    # seconds) within its resolution.
    for beat, want in zip(beats, expected, strict=True):
        error = abs((moment(beat["at"]) - moment(want)).total_seconds())
        assert error <= (0.001 if server_time else 1.0), (beat, want)
    assert world.outbox.heartbeat_count() == 0
    assert "clock is 900 s ahead of the server's" in caplog.text
    assert "dropped" not in caplog.text
    # From now on the PC stamps with the server's time.
    world.run(5)
    latest = beats_sent(world)[-1]
    wanted = world.clock.wall() - AHEAD
    assert abs((moment(latest["at"]) - wanted).total_seconds()) <= 1.0


def test_a_heartbeat_the_server_keeps_finding_in_the_future_is_dropped_after_a_few_tries(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    queue_while_offline(world, 2)
    message = "in the future: check the PC's clock"
    refusal = {"detail": f"heartbeats[0].at: {message}", "errors": {"heartbeats[0].at": message}}
    world.script.then(HEARTBEATS, *[Answer(422, refusal)] * (MAX_RETIMES + 1))
    world.agent.flush()
    # The first heartbeat: sent, moved and sent again MAX_RETIMES times, then dropped; the
    # second one goes through.
    assert len(world.script.sent(HEARTBEATS)) == MAX_RETIMES + 2
    assert f"heartbeat 1 in its future after {MAX_RETIMES} correction(s)" in caplog.text
    assert world.script.seqs() == [2]
    assert world.outbox.heartbeat_count() == 0


def test_a_screenshot_from_a_clock_ahead_is_moved_and_accepted(world: World) -> None:
    world.script.skew = -AHEAD
    world.script.server_time = True
    stamp = world.clock.wall()
    world.outbox.add_screenshot(
        taken_at=iso(stamp), width=1, height=1, mime="image/webp", image=b"x"
    )
    world.agent.flush()
    first, second = world.script.sent(SCREENSHOTS)
    assert (first.headers["X-Answered"], second.headers["X-Answered"]) == ("422", "201")
    assert second.form()["taken_at"].decode() == iso(stamp - AHEAD)
    assert second.form()["client_id"] == first.form()["client_id"]
    assert world.outbox.screenshot_count() == 0


def test_a_server_clock_within_a_second_moves_no_timestamp(world: World) -> None:
    world.script.skew = timedelta(milliseconds=700)
    world.script.server_time = True
    world.run(11)
    assert [b["at"] for b in beats_sent(world)] == [
        "2026-11-30T09:00:00.000Z",
        "2026-11-30T09:00:05.000Z",
        "2026-11-30T09:00:10.000Z",
    ]
    assert world.agent.time.offset is None


# Phone numbers never reach the disk queue (security review).


def test_a_phone_number_in_a_title_never_reaches_the_queue_file(
    world: World, tmp_path: Path
) -> None:
    rng = random.Random()
    phone = "+7 {}{}{} {}{}{}-{}{}-{}{}".format(*(rng.randrange(10) for _ in range(10)))
    world.desk.window = Window("microsip.exe", f"Calling {phone} - MicroSIP")
    world.use_policy(redact_patterns=[])  # the project's default: no patterns of its own
    world.script.then(HEARTBEATS, *[Answer(503, {"detail": "down"})] * 50)
    world.run(30)
    assert world.outbox.heartbeat_count() > 0
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("q.sqlite3*"))
    digits = "".join(c for c in phone if c.isdigit())
    assert phone.encode() not in raw and digits.encode() not in raw
    assert phone[-5:].encode() not in raw
    queued = world.outbox.heartbeats(1)[0].item
    assert queued["title"] == "Calling [redacted] - MicroSIP"
