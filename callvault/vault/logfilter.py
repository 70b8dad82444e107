"""A logging filter that blanks anything shaped like a phone number, as a last line of defence.

Code never logs digits on purpose (sealed values log as their mask); this catches the accident,
such as an exception message quoting user input.
"""

from __future__ import annotations

import logging
import re

# Seven or more digits, optionally separated by spaces, dots, dashes or parentheses.
PHONE_LIKE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")


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
