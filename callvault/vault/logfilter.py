"""A logging filter that blanks anything shaped like a phone number, as a last line of defence.

Code never logs digits on purpose (sealed values log as their mask); this catches the accident,
such as an exception message quoting user input.
"""

from __future__ import annotations

import logging
import re

# What people put between the digits of a number: spaces (non-breaking and thin ones too),
# parentheses, dots, slashes, underscores (file names) and dashes (hyphen, the typographic
# dashes U+2010-U+2015, minus). The hyphen comes last: a range or a literal in both engines.
SEPARATOR = r"[\s().\u00a0\u2009\u202f\u2010-\u2015\u2212/_-]"
# A date: 2026-11-29, 2026/11/29, 29.11.2026, 11/29/2026, 2026_11_29 (years 1900-2099).
_DATE_SEPARATOR = r"[./_-]"
DATE = (
    rf"(?:(?:19|20)\d\d{_DATE_SEPARATOR}[0-3]?\d{_DATE_SEPARATOR}[0-3]?\d"
    rf"|[0-3]?\d{_DATE_SEPARATOR}[0-3]?\d{_DATE_SEPARATOR}(?:19|20)\d\d)"
)
# A run of digits and separators that is nothing but a date or a range of two (after the
# minutes of a time, or before its hour: a colon ends a run), left alone: "29.11.2026 14:02"
# or "2026-11-29 - 2026-11-30". A run that goes on with more digits is blanked whole.
_DATES_ONLY = (
    rf"(?:(?<=:)[0-5]\d{SEPARATOR}{{1,3}})?{DATE}(?:{SEPARATOR}{{1,3}}{DATE})?"
    rf"(?:{SEPARATOR}{{1,3}}[0-2]?\d:|(?!{SEPARATOR}*\d))"
)
# Seven or more digits with separators between them, starting where a run of them starts
# (not after a digit, nor after a digit and one separator), unless that run is only dates.
# Times (14:02) and money (1 990,00) never reach seven digits in one run: a colon or a
# comma ends it. The pattern is also PostgreSQL's (audit/bypass.py): lookarounds with fixed
# widths behind, \uXXXX escapes and no quotes keep it meaning the same to both engines
# (vault/tests/test_logfilter.py checks them side by side).
PHONE_LIKE = re.compile(rf"\+?(?<!\d)(?<!\d{SEPARATOR})(?!{_DATES_ONLY})\d(?:{SEPARATOR}*\d){{6,}}")


def redact(text: str) -> str:
    """Replace phone-like digit runs with a fixed marker."""
    return PHONE_LIKE.sub("[redacted]", text)


class RedactPhoneDigits(logging.Filter):
    """Rewrites a record's message and arguments so no phone-like digit run is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if PHONE_LIKE.search(message):
            record.msg = redact(message)
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = logging.Formatter().formatException(record.exc_info)
            if PHONE_LIKE.search(text):
                record.exc_text = redact(text)
                record.exc_info = (record.exc_info[0], exc, None)
        return True
