"""Titles are redacted on the PC, before anything is queued: phone-shaped runs of digits always,
and the policy's patterns."""

from __future__ import annotations

import random

import pytest

from callvault_agent.redact import MASK, MAX_LENGTH, Redactor


def test_it_masks_every_match_of_every_pattern() -> None:
    redact = Redactor([r"\d{6,}", r"(?i)secret-\w+"])
    assert redact("Order 12345678 - SECRET-plan - 12345") == f"Order {MASK} - {MASK} - 12345"


def test_without_patterns_the_title_is_kept() -> None:
    assert Redactor([])("Inbox - Mail") == "Inbox - Mail"


def test_nothing_stays_nothing() -> None:
    redact = Redactor([r"\d+"])
    assert redact(None) is None
    assert redact("   ") is None


def test_a_pattern_that_does_not_compile_withholds_titles_entirely() -> None:
    redact = Redactor([r"\d{6,}", r"([unclosed"])
    assert redact.broken == [r"([unclosed"]
    assert redact("Order 12345678") is None


def test_long_titles_are_cut_after_masking() -> None:
    redact = Redactor([r"x{400}"])
    assert redact("x" * 400) == MASK
    assert len(redact("y" * 1000) or "") == MAX_LENGTH


# Phone numbers are masked even when the project has no patterns (security review). The
# numbers are made up at test time from random digits, in the shapes people write them.

PHONE_SHAPES = [
    "+7 ddd ddd-dd-dd",
    "8 (ddd) ddd-dd-dd",
    "ddddddddddd",
    "+7(ddd)ddd-dd-dd",
    "+dddddddddddd",
    "ddd.ddd.dd.dd",
    "ddd-dd-dd",
    "(ddd) ddd-dddd",
    "+dd dd dddd dddd",
    "8\u2013ddd\u2013ddd\u2013dd\u2013dd",  # en dashes
    "ddd \u2014 ddd \u2014 dddd",  # em dashes with spaces
    "ddd/ddd/dd/dd",
    "ddd_ddd_dd_dd",
    "+7\u00a0ddd\u00a0ddd\u00a0dd\u00a0dd",  # no-break spaces
    "+7 ddd ddd\u2009dd\u2009dd",  # thin spaces
    "8 ddd ddd dd dd",
]


def fake_phone(shape: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if c == "d" else c for c in shape)


@pytest.mark.parametrize("shape", PHONE_SHAPES)
def test_phone_numbers_are_masked_without_any_project_pattern(shape: str) -> None:
    rng = random.Random()
    for template in ("Calling {} - MicroSIP", "{}", "WhatsApp: {} - chat", "Client {}, order"):
        phone = fake_phone(shape, rng)
        masked = Redactor(())(template.format(phone))
        assert masked == template.format(MASK), (phone, masked)


def test_phone_numbers_are_masked_before_the_projects_patterns_apply() -> None:
    phone = fake_phone("+7 ddd dddddddd", random.Random())
    # A project pattern taking only the long part must not leave "+7 ddd" behind.
    assert Redactor([r"\d{6,}"])(f"Call {phone}") == f"Call {MASK}"


@pytest.mark.parametrize(
    "title",
    [
        "Meeting 14:30\u201315:45 - Calendar",
        "Report 2026-11-29.xlsx - Excel",
        "29.11.2026 09:00 - Shift plan",
        "Week 24.11.2025 \u2013 30.11.2025",
        "24.11.2025\u201330.11.2025",
        "11/29/2026 2:05 PM",
        "2026-11-29T14:05:33Z - logs",
        "Opening hours 09:00-18:00",
        "2026-11-29 14:05:33.123 ERROR",
        "2026/11/29 - 2026/12/05",
        "Order 123456 - CRM",
        "Python 3.11.7",
    ],
)
def test_times_dates_and_short_numbers_are_kept(title: str) -> None:
    assert Redactor(())(title) == title


def test_a_phone_number_beside_a_date_is_still_masked() -> None:
    phone = fake_phone("ddd-dd-dd", random.Random())
    assert Redactor(())(f"29.11.2026 {phone}") == f"{MASK}"
    assert Redactor(())(f"29.11.2026, {phone}") == f"29.11.2026, {MASK}"
    assert Redactor(())(f"{phone} 14:05") == MASK
