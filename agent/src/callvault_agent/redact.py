"""The policy's redaction patterns, applied to window titles on the PC before anything is queued."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

# The same mask the server puts in place of a match, so both read alike.
MASK = "[redacted]"
# Titles longer than this are cut: nothing useful lives past it, and a huge title is a cost.
MAX_LENGTH = 300


class Redactor:
    """Replaces every match of the project's patterns with a mask.

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
        for pattern in self.patterns:
            text = pattern.sub(MASK, text)
        text = text.strip()
        return text[:MAX_LENGTH] or None
