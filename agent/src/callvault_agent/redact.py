"""Redaction of window titles (and program names) on the PC, before anything is queued: the
project's patterns, and always a built-in one for anything shaped like a phone number."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

# The same mask the server puts in place of a match, so both read alike.
MASK = "[redacted]"
# Titles longer than this are cut: nothing useful lives past it, and a huge title is a cost.
MAX_LENGTH = 300
# A phone number has at least this many digits (a local number without its area code).
PHONE_DIGITS = 7

# What people write between the digits of a phone number: white space (no-break and thin
# spaces too), dots, hyphens and dashes (hyphen, non-breaking hyphen, figure, en and em dash,
# horizontal bar, minus sign), slashes, underscores, parentheses.
_SEPARATOR = r"[\s.\-\u2010-\u2015\u2212/_()]"
# A run of digits held together by short stretches of separators, with a leading + or (. A
# colon joins too, so that a date followed by its time ("2026-11-29 14:05") is one run that can
# be recognised as such rather than a date and a stray "14".
_RUN = re.compile(rf"(?:[+(]\s*)?\d(?:(?:{_SEPARATOR}|:){{0,4}}\d)*")
# The dates and times a run may consist of without being a phone number. Years 1900-2099,
# four digits, the same separator twice: no phone number is written like that.
_YMD = re.compile(r"(?<!\d)((?:19|20)\d\d)([-./])(\d{1,2})\2(\d{1,2})(?!\d)")
_DMY = re.compile(r"(?<!\d)(\d{1,2})([-./])(\d{1,2})\2((?:19|20)\d\d)(?!\d)")
_TIME = re.compile(r"(?<!\d)(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,6})?)?(?!\d)")


def _is_date(match: re.Match[str]) -> bool:
    if match.re is _YMD:
        month, day = int(match.group(3)), int(match.group(4))
        return 1 <= month <= 12 and 1 <= day <= 31
    first, second = int(match.group(1)), int(match.group(3))
    day_month = 1 <= first <= 31 and 1 <= second <= 12
    month_day = 1 <= first <= 12 and 1 <= second <= 31
    return day_month or month_day


def _only_dates_and_times(run: str) -> bool:
    """Whether the run's digits all belong to dates and times (29.11.2026 09:00-18:00)."""
    rest = run
    for pattern in (_YMD, _DMY):
        rest = pattern.sub(lambda m: " " if _is_date(m) else m.group(0), rest)
    rest = _TIME.sub(" ", rest)
    return not any(c.isdigit() for c in rest)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if sum(c.isdigit() for c in run) < PHONE_DIGITS or _only_dates_and_times(run):
        return run
    return MASK


def mask_phone_numbers(text: str) -> str:
    """Every run of 7 or more digits (with the separators phone numbers are written with) is
    masked, unless it is made of dates and times only."""
    return _RUN.sub(_mask_run, text)


class Redactor:
    """Masks anything shaped like a phone number, then every match of the project's patterns
    (in that order: a project pattern taking part of a number must not leave the rest).

    A pattern that does not compile cannot be applied, so titles are withheld entirely rather
    than sent with what that pattern was meant to hide.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[re.Pattern[str]] = []
        self.broken: list[str] = []
        for source in patterns:
            try:
                self.patterns.append(re.compile(source))
            except re.error as exc:
                self.broken.append(source)
                log.error(
                    "redaction pattern %r does not compile (%s): titles withheld", source, exc
                )

    def __call__(self, text: str | None) -> str | None:
        """The text with every match masked; None when there is nothing or it cannot be safe."""
        if text is None or self.broken:
            return None
        # Cut after masking, so a pattern that spans the cut still matches.
        text = mask_phone_numbers(text)
        for pattern in self.patterns:
            text = pattern.sub(MASK, text)
        text = text.strip()
        return text[:MAX_LENGTH] or None
