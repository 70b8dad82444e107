"""The policy document of the contract is parsed, checked, and its working hours honoured."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callvault_agent.policy import PolicyError, parse_policy

CONTRACT_EXAMPLE = {
    "version": 3,
    "heartbeat_seconds": 5,
    "idle_seconds": 120,
    "window_titles": True,
    "redact_patterns": ["\\d{6,}"],
    "screenshots_per_interval": [1, 3],
    "screenshot_interval_seconds": 600,
    "screenshot_scale": 0.5,
    "screenshot_blur": 0,
    "screenshot_format": "webp",
    "screenshot_quality": 60,
    "working_hours": {
        "zone": "Europe/Moscow",
        "days": [1, 2, 3, 4, 5],
        "start": "09:00",
        "end": "18:00",
    },
    "notice": "Monitoring is on",
    "max_screenshot_bytes": 2000000,
}


def test_it_reads_the_contracts_example() -> None:
    policy = parse_policy(CONTRACT_EXAMPLE)
    assert policy.version == 3
    assert (policy.screenshots_min, policy.screenshots_max) == (1, 3)
    assert policy.redact_patterns == ("\\d{6,}",)
    assert policy.working_hours is not None
    assert policy.working_hours.zone.key == "Europe/Moscow"


def test_unknown_keys_are_ignored_and_missing_ones_default_to_collecting_little() -> None:
    policy = parse_policy({"version": 1, "something_new": 5})
    assert policy.version == 1
    assert not policy.screenshots_enabled
    assert policy.working_hours is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("version", "3"),
        ("heartbeat_seconds", 0),
        ("heartbeat_seconds", True),
        ("screenshots_per_interval", [3, 1]),
        ("screenshots_per_interval", [1]),
        ("screenshot_scale", 2),
        ("screenshot_format", "png"),
        ("redact_patterns", "\\d+"),
        ("working_hours", {"zone": "Mars/Olympus", "days": [1], "start": "09:00", "end": "18:00"}),
        ("working_hours", {"zone": "UTC", "days": [0], "start": "09:00", "end": "18:00"}),
        ("working_hours", {"zone": "UTC", "days": [1], "start": "9am", "end": "18:00"}),
    ],
)
def test_it_refuses_what_it_cannot_follow(key: str, value: object) -> None:
    with pytest.raises(PolicyError, match=key.split("_")[0]):
        parse_policy({**CONTRACT_EXAMPLE, key: value})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_working_hours_are_local_to_the_zone_and_the_days() -> None:
    policy = parse_policy(CONTRACT_EXAMPLE)
    # 2026-11-30 is a Monday; Moscow is UTC+3.
    assert policy.in_working_hours(at("2026-11-30T06:00:00+00:00"))  # 09:00 in Moscow
    assert not policy.in_working_hours(at("2026-11-30T05:59:00+00:00"))
    assert not policy.in_working_hours(at("2026-11-30T15:00:00+00:00"))  # 18:00: the end
    assert not policy.in_working_hours(at("2026-11-29T08:00:00+00:00"))  # Sunday


def test_a_night_shift_belongs_to_the_day_it_started() -> None:
    night = {"zone": "UTC", "days": [5], "start": "22:00", "end": "06:00"}
    policy = parse_policy({**CONTRACT_EXAMPLE, "working_hours": night})
    assert policy.in_working_hours(at("2026-12-04T23:00:00+00:00"))  # Friday night
    assert policy.in_working_hours(at("2026-12-05T05:00:00+00:00"))  # Saturday morning
    assert not policy.in_working_hours(at("2026-12-05T23:00:00+00:00"))  # Saturday night
    assert not policy.in_working_hours(at("2026-12-04T05:00:00+00:00"))  # Friday morning


def test_no_working_hours_means_always() -> None:
    policy = parse_policy({**CONTRACT_EXAMPLE, "working_hours": None})
    assert policy.in_working_hours(at("2026-11-29T03:00:00+00:00"))
