"""The agent's clocks: a steady one for waiting, and UTC for timestamps that follows the
server's clock when this PC's is off (the server refuses heartbeats far in its future).

Until an answer of the server says otherwise, timestamps are this PC's wall clock. When an
answer's time (`server_time` of a JSON answer, to the millisecond, else its `Date` header, to
the second) differs from it by more than the measurement can explain, the agent keeps an
offset from then on: timestamp = steady clock + offset, so a clock set wrong, or set right
again, while the agent runs does not move its timestamps either.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from callvault_agent.api import Reply

log = logging.getLogger(__name__)

# The disagreement (on top of the measurement's own uncertainty) that makes the agent follow
# the server's clock: below it, both clocks are right as far as anyone can tell, and the
# timestamps stay exactly this PC's.
TOLERANCE = 1.0


def _boot_time() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _darwin_monotonic() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def steady_clock() -> Callable[[], float]:
    """Seconds that never go back and keep counting while the PC sleeps: the back-off and
    the schedule must see a suspended PC's lost time (time.monotonic stops during suspend
    on Linux and macOS)."""
    if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
        return _boot_time
    if sys.platform == "darwin":
        return _darwin_monotonic  # Apple's CLOCK_MONOTONIC counts sleep
    return time.monotonic  # Windows: counts sleep already


class TimeKeeper:
    """UTC for timestamps and working hours: this PC's wall clock until the server says it is
    off, then the server's time carried forward on the steady clock."""

    def __init__(
        self,
        steady: Callable[[], float],
        wall: Callable[[], datetime],
        tolerance: float = TOLERANCE,
    ) -> None:
        self.steady = steady
        self.wall = wall
        self.tolerance = tolerance
        self.offset: float | None = None  # the server's epoch seconds minus steady()

    def now(self) -> datetime:
        if self.offset is None:
            return self.wall()
        return datetime.fromtimestamp(self.steady() + self.offset, UTC)

    def skew(self) -> float:
        """Seconds to add to this PC's wall clock to get the server's (0 while none is known)."""
        if self.offset is None:
            return 0.0
        return self.steady() + self.offset - self.wall().timestamp()

    def observe(self, reply: Reply, sent: float, received: float) -> None:
        """Compare with the time of an answer asked at `sent` and received at `received`
        (steady clock). Only the server's own answers (JSON) count: a proxy's or a portal's
        clock is not the one that judges the timestamps."""
        if not isinstance(reply.body, dict) or reply.is_redirect:
            return
        moment, resolution = reply.server_time, 0.0
        if moment is None:
            moment, resolution = reply.date, 1.0  # whole seconds, cut down
        if moment is None:
            return
        # The server read its clock somewhere between sending and receiving; the middle is
        # the best guess, off by at most half the round trip (and half the resolution).
        middle = (sent + received) / 2
        measured = moment.timestamp() + resolution / 2 - middle
        uncertainty = (received - sent) / 2 + resolution / 2
        current = self.offset
        if current is None:
            current = self.wall().timestamp() - self.steady()
        if abs(measured - current) <= self.tolerance + uncertainty:
            return
        self.offset = measured
        ahead = self.wall().timestamp() - (self.steady() + measured)
        log.warning(
            "this PC's clock is %.0f s %s the server's: timestamps follow the server's clock",
            abs(ahead),
            "ahead of" if ahead > 0 else "behind",
        )
