"""The operator's language, for the Accept-Language header: the server writes its notice
(what is collected, how often) in it.

Linux and macOS: the POSIX locale variables for messages (LANGUAGE's list, then LC_ALL,
LC_MESSAGES, LANG, as gettext reads them). Windows: the user's locale from kernel32's
GetUserDefaultLocaleName, written against its documented signature and unit-tested with a fake
library (tests/test_language.py), not on a real Windows machine.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

LOCALE_NAME_MAX_LENGTH = 85  # winnls.h, including the terminating null
# "ru", "pt_BR", "sr_RS@latin" (the modifier is dropped), "zh-Hant-TW": letters, then parts.
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
MAX_TAGS = 3


def tag(locale_name: str) -> str | None:
    """A locale name (ru_RU.UTF-8, en-GB, C) as a language tag (ru-RU), None for C/POSIX."""
    name = locale_name.split(".", 1)[0].split("@", 1)[0].strip()
    if name.upper() in ("", "C", "POSIX") or not _TAG.fullmatch(name):
        return None
    first, *rest = name.replace("_", "-").split("-")
    return "-".join([first.lower(), *rest])


def posix_tags(environ: Mapping[str, str]) -> list[str]:
    """The languages the POSIX locale variables name, most wanted first."""
    locale_name = next(
        (environ[key] for key in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(key)), ""
    )
    chosen = tag(locale_name)
    if chosen is None:
        return []  # gettext ignores LANGUAGE in the C locale, and so do we
    wanted = [tag(name) for name in environ.get("LANGUAGE", "").split(":")]
    return [t for t in wanted if t] or [chosen]


def windows_tags(kernel32: Any = None) -> list[str]:
    """The user's default locale name (ru-RU) from GetUserDefaultLocaleName."""
    if kernel32 is None:
        if sys.platform != "win32":
            return []
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    function = kernel32.GetUserDefaultLocaleName
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_wchar_p, ctypes.c_int]
    buffer = ctypes.create_unicode_buffer(LOCALE_NAME_MAX_LENGTH)
    if function(buffer, LOCALE_NAME_MAX_LENGTH) <= 0:
        return []
    chosen = tag(buffer.value)
    return [chosen] if chosen else []


def header(tags: list[str]) -> str | None:
    """Accept-Language for the tags: each, then its bare language, with falling weights."""
    ranges: list[str] = []
    for language_tag in tags:
        for candidate in (language_tag, language_tag.split("-", 1)[0]):
            if candidate not in ranges:
                ranges.append(candidate)
    ranges = ranges[: MAX_TAGS * 2]
    if not ranges:
        return None
    weighted = [r if i == 0 else f"{r};q={max(0.1, 1 - i / 10):.1f}" for i, r in enumerate(ranges)]
    return ", ".join(weighted)


def accept_language(
    environ: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    kernel32: Any = None,
) -> str | None:
    """The Accept-Language header for this PC's language; None when it has none."""
    if platform == "win32":
        return header(windows_tags(kernel32))
    return header(posix_tags(os.environ if environ is None else environ))
