"""The project's monitoring policy as the server sends it, checked and with safe defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class PolicyError(ValueError):
    """The server sent a policy this agent cannot follow."""


@dataclass(frozen=True)
class WorkingHours:
    """Days (1 = Monday) and a local time window; end before start means past midnight."""

    zone: ZoneInfo
    days: frozenset[int]
    start: time
    end: time

    def contains(self, moment: datetime) -> bool:
        """Whether an aware moment falls inside the working hours."""
        local = moment.astimezone(self.zone)
        now = local.time()
        if self.start <= self.end:
            return local.isoweekday() in self.days and self.start <= now < self.end
        # A night shift belongs to the day it started on.
        if now >= self.start:
            return local.isoweekday() in self.days
        yesterday = (local.isoweekday() - 2) % 7 + 1
        return now < self.end and yesterday in self.days

    def describe(self) -> str:
        days = ",".join(str(d) for d in sorted(self.days))
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key} on days {days}"


@dataclass(frozen=True)
class Policy:
    """What to collect and how often (see docs/agent.md for each field)."""

    version: int = 0
    heartbeat_seconds: float = 5.0
    idle_seconds: float = 120.0
    window_titles: bool = True
    redact_patterns: tuple[str, ...] = ()
    screenshots_min: int = 0
    screenshots_max: int = 0
    screenshot_interval_seconds: float = 600.0
    screenshot_scale: float = 0.5
    screenshot_blur: float = 0.0
    screenshot_format: str = "webp"
    screenshot_quality: int = 60
    working_hours: WorkingHours | None = None
    notice: str = ""
    max_screenshot_bytes: int = 2_000_000
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def screenshots_enabled(self) -> bool:
        return self.screenshots_max > 0

    def in_working_hours(self, moment: datetime) -> bool:
        """No working hours set means always."""
        return self.working_hours is None or self.working_hours.contains(moment)


def _number(data: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{key} must be a number")
    if not low <= value <= high:
        raise PolicyError(f"{key} must be between {low} and {high}")
    return float(value)


def _clock(value: Any, key: str) -> time:
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
        raise PolicyError(f"working_hours.{key} must be HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise PolicyError(f"working_hours.{key} must be HH:MM") from None


def _working_hours(value: Any) -> WorkingHours | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PolicyError("working_hours must be an object or null")
    try:
        zone = ZoneInfo(str(value.get("zone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError("working_hours.zone is not a known time zone") from None
    days = value.get("days", [1, 2, 3, 4, 5])
    if not isinstance(days, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days
    ):
        raise PolicyError("working_hours.days must be a list of 1..7")
    return WorkingHours(
        zone=zone,
        days=frozenset(days),
        start=_clock(value.get("start", "00:00"), "start"),
        end=_clock(value.get("end", "00:00"), "end"),
    )


def parse_policy(data: Any) -> Policy:
    """Check a policy document from the server; unknown keys are kept in `raw` and ignored."""
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a JSON object")
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise PolicyError("version must be an integer")
    patterns = data.get("redact_patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise PolicyError("redact_patterns must be a list of strings")
    shots = data.get("screenshots_per_interval", [0, 0])
    if (
        not isinstance(shots, list)
        or len(shots) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in shots)
        or not 0 <= shots[0] <= shots[1] <= 100
    ):
        raise PolicyError("screenshots_per_interval must be [min, max] with 0 <= min <= max")
    fmt = data.get("screenshot_format", "webp")
    if fmt not in ("webp", "jpeg"):
        raise PolicyError("screenshot_format must be webp or jpeg")
    notice = data.get("notice", "")
    if not isinstance(notice, str):
        raise PolicyError("notice must be a string")
    return Policy(
        version=version,
        heartbeat_seconds=_number(data, "heartbeat_seconds", 5, 1, 3600),
        idle_seconds=_number(data, "idle_seconds", 120, 1, 86400),
        window_titles=bool(data.get("window_titles", True)),
        redact_patterns=tuple(patterns),
        screenshots_min=shots[0],
        screenshots_max=shots[1],
        screenshot_interval_seconds=_number(data, "screenshot_interval_seconds", 600, 10, 86400),
        screenshot_scale=_number(data, "screenshot_scale", 0.5, 0.05, 1),
        screenshot_blur=_number(data, "screenshot_blur", 0, 0, 100),
        screenshot_format=fmt,
        screenshot_quality=int(_number(data, "screenshot_quality", 60, 1, 100)),
        working_hours=_working_hours(data.get("working_hours")),
        notice=notice,
        max_screenshot_bytes=int(_number(data, "max_screenshot_bytes", 2_000_000, 1024, 1e9)),
        raw=dict(data),
    )
