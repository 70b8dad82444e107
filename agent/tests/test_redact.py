"""Titles are redacted on the PC, with the policy's patterns, before anything is queued."""

from __future__ import annotations

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
