"""The clock the agent stamps with: this PC's until the server's answers say it is off by more
than their measurement can explain, then the server's carried on the steady clock."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from typing import Any

import pytest

from callvault_agent.api import Reply
from callvault_agent.timekeeping import TimeKeeper, steady_clock
from scripted import iso


class Clocks:
    def __init__(self) -> None:
        self.steady = 100.0
        self.wall_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

    def tick(self) -> float:
        return self.steady

    def wall(self) -> datetime:
        return self.wall_at

    def advance(self, seconds: float) -> None:
        self.steady += seconds
        self.wall_at += timedelta(seconds=seconds)


def reply(*, server_time: datetime | None = None, date: datetime | None = None) -> Reply:
    headers = Message()
    if date is not None:
        headers["Date"] = format_datetime(date, usegmt=True)
    body: Any = {"accepted": 1, "last_seq": 1}
    if server_time is not None:
        body["server_time"] = iso(server_time)
    return Reply(200, headers, body)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def test_a_server_within_the_tolerance_changes_nothing(clocks: Clocks) -> None:
    keeper = TimeKeeper(clocks.tick, clocks.wall)
    keeper.observe(reply(server_time=clocks.wall() + timedelta(seconds=0.8)), 100.0, 100.0)
    # The Date header has whole seconds: 1.4 s is within its half second plus the tolerance.
    keeper.observe(reply(date=clocks.wall() - timedelta(seconds=1.4)), 100.0, 100.0)
    assert keeper.offset is None and keeper.now() == clocks.wall() and keeper.skew() == 0


def test_a_clock_ahead_follows_the_server_and_a_later_jump_of_it_moves_nothing(
    clocks: Clocks,
) -> None:
    keeper = TimeKeeper(clocks.tick, clocks.wall)
    server = clocks.wall() - timedelta(minutes=15)
    # Asked at 99.8, answered at 100.2: the server's reading is taken for the middle.
    keeper.observe(reply(server_time=server), 99.8, 100.2)
    assert keeper.now() == server
    assert keeper.skew() == pytest.approx(-900)
    clocks.advance(10)
    assert keeper.now() == server + timedelta(seconds=10)
    clocks.wall_at += timedelta(hours=1)  # somebody sets the PC's clock meanwhile
    assert keeper.now() == server + timedelta(seconds=10)
    assert keeper.skew() == pytest.approx(-900 - 3600)


def test_the_date_header_is_used_when_there_is_no_server_time(clocks: Clocks) -> None:
    keeper = TimeKeeper(clocks.tick, clocks.wall)
    keeper.observe(reply(date=clocks.wall() + timedelta(minutes=20)), 100.0, 100.0)
    # Whole seconds, cut down: the middle of that second is the best guess.
    assert keeper.now() == clocks.wall() + timedelta(minutes=20, seconds=0.5)


def test_answers_that_are_not_the_servers_do_not_count(clocks: Clocks) -> None:
    keeper = TimeKeeper(clocks.tick, clocks.wall)
    headers = Message()
    headers["Date"] = format_datetime(clocks.wall() - timedelta(hours=3), usegmt=True)
    keeper.observe(Reply(200, headers, None), 100.0, 100.0)  # an HTML page
    headers["Location"] = "https://elsewhere.example/"
    keeper.observe(Reply(302, headers, {"detail": "moved"}), 100.0, 100.0)
    assert keeper.offset is None


def test_the_steady_clock_counts_a_suspended_pcs_time() -> None:
    clock = steady_clock()
    if sys.platform.startswith("linux"):
        # CLOCK_BOOTTIME, unlike time.monotonic (CLOCK_MONOTONIC), includes suspend.
        assert abs(clock() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0
    first = clock()
    assert clock() >= first
