"""Telling the operator: monitoring is on, what is collected and how often.

At start, whenever the policy changes, and again every --notice-minutes while running: a
console line (in the session's log when started by XDG autostart) and a desktop notification
where `notify-send` exists, so the reminder reaches the screen too. There is no tray icon
(docs/agent.md says why).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from callvault_agent.policy import Policy


def _every(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return "every minute" if minutes == 1 else f"every {minutes} minutes"
    return f"every {seconds:g} seconds"


def describe(policy: Policy, server: str) -> list[str]:
    """The notice's lines for a policy."""
    lines = [
        f"Monitoring is ON: this PC reports to {server}.",
        f"- activity (active / idle after {policy.idle_seconds:g} s without input / locked)"
        f" {_every(policy.heartbeat_seconds)}",
    ]
    if policy.window_titles:
        patterns = len(policy.redact_patterns)
        redacted = f" and {patterns} pattern(s) of the project" if patterns else ""
        lines.append(
            "- the program in front and its window title, with phone numbers"
            f"{redacted} masked on this PC"
        )
    else:
        lines.append("- no programs or window titles")
    if policy.screenshots_enabled:
        count = (
            str(policy.screenshots_max)
            if policy.screenshots_min == policy.screenshots_max
            else f"{policy.screenshots_min}-{policy.screenshots_max}"
        )
        blur = f", blurred (radius {policy.screenshot_blur:g})" if policy.screenshot_blur else ""
        every = _every(policy.screenshot_interval_seconds)
        lines.append(
            f"- {count} screenshot(s) at random moments {every}"
            f", scaled to {policy.screenshot_scale:.0%}{blur}"
        )
    else:
        lines.append("- no screenshots")
    if policy.working_hours is not None:
        lines.append(f"- only during working hours: {policy.working_hours.describe()}")
    if policy.notice:
        lines.append(policy.notice)
    return lines


SUMMARY = "callvault monitoring is on"


class Notifier:
    """Shows the notice now and then: the console line and `desktop` (a notification, by
    default through notify-send)."""

    def __init__(
        self,
        every_seconds: float = 1800,
        out: TextIO | None = None,
        desktop: Callable[[str, str], None] | None = None,
    ) -> None:
        self.every_seconds = every_seconds
        self.out = out or sys.stdout
        self.desktop = desktop if desktop is not None else NotifySend()
        self.last_shown = float("-inf")
        self.shown_version: int | None = None

    def show(self, policy: Policy, server: str, now: float, *, reason: str = "") -> None:
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
        lines = describe(policy, server)
        head = f"[callvault-agent {stamp}] {lines[0]}" + (f" ({reason})" if reason else "")
        print("\n    ".join([head, *lines[1:]]), file=self.out, flush=True)
        self.desktop(SUMMARY, "\n".join(lines[1:]))
        self.last_shown = now
        self.shown_version = policy.version

    def close(self) -> None:
        close = getattr(self.desktop, "close", None)
        if callable(close):
            close()

    def tick(self, policy: Policy, server: str, now: float) -> None:
        """Show the notice if the policy changed or it is time to remind."""
        if self.shown_version != policy.version:
            reason = "policy changed" if self.shown_version is not None else ""
            self.show(policy, server, now, reason=reason)
        elif now - self.last_shown >= self.every_seconds:
            self.show(policy, server, now, reason="reminder")

    def due_in(self, now: float) -> float:
        return max(0.0, self.last_shown + self.every_seconds - now)


class NotifySend:
    """Desktop notifications through notify-send, when it exists; never fails or blocks the
    agent (it is started and left to finish; one still hanging, say for a notification
    daemon that does not answer, is ended before the next)."""

    def __init__(self, tool: str | None = None) -> None:
        self.tool = tool if tool is not None else shutil.which("notify-send")
        self.proc: subprocess.Popen[bytes] | None = None

    def __call__(self, summary: str, body: str) -> None:
        if not self.tool:
            return
        self.close()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 (our own fixed arguments)
                [self.tool, "--app-name=callvault-agent", summary, body],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self.proc = None

    def close(self) -> None:
        """End the last notify-send if it still runs (only ever the one we started)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
