"""Accept-Language from the operator's OS language: the POSIX locale variables, and on Windows
GetUserDefaultLocaleName at its boundary (a fake kernel32 checking the call shape; written to
the Win32 documentation, not run on a real Windows machine)."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from callvault_agent.language import LOCALE_NAME_MAX_LENGTH, accept_language, tag
from test_windows import FakeDLL


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ru_RU.UTF-8", "ru-RU"),
        ("en_GB", "en-GB"),
        ("sr_RS.UTF-8@latin", "sr-RS"),
        ("de", "de"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("C", None),
        ("C.UTF-8", None),
        ("POSIX", None),
        ("", None),
        ("not a locale!", None),
    ],
)
def test_locale_names_become_language_tags(name: str, expected: str | None) -> None:
    assert tag(name) == expected


def test_the_posix_variables_in_gettexts_order() -> None:
    assert accept_language({"LANG": "ru_RU.UTF-8"}, "linux") == "ru-RU, ru;q=0.9"
    both = {"LANG": "ru_RU.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}
    assert accept_language(both, "linux") == "en-US, en;q=0.9"
    assert accept_language({**both, "LC_ALL": "de_DE.UTF-8"}, "linux") == "de-DE, de;q=0.9"
    # LANGUAGE lists what the desktop's language settings chose, most wanted first...
    chosen = {"LANG": "ru_RU.UTF-8", "LANGUAGE": "uk:ru_RU"}
    assert accept_language(chosen, "darwin") == "uk, ru-RU;q=0.9, ru;q=0.8"
    # ...but not in the C locale, as gettext does.
    assert accept_language({"LANG": "C", "LANGUAGE": "ru"}, "linux") is None
    assert accept_language({}, "linux") is None


def fake_kernel32(name: str, result: int | None = None) -> FakeDLL:
    def get_user_default_locale_name(buffer: Any, size: int) -> int:
        assert size == LOCALE_NAME_MAX_LENGTH
        assert ctypes.sizeof(buffer) // ctypes.sizeof(ctypes.c_wchar) >= size
        buffer.value = name
        return len(name) + 1 if result is None else result  # counts the terminating null

    return FakeDLL(GetUserDefaultLocaleName=get_user_default_locale_name)


def test_windows_asks_get_user_default_locale_name() -> None:
    kernel32 = fake_kernel32("ru-RU")
    assert accept_language({"LANG": "de_DE"}, "win32", kernel32) == "ru-RU, ru;q=0.9"
    function = kernel32.functions["GetUserDefaultLocaleName"]
    assert function.argtypes == [ctypes.c_wchar_p, ctypes.c_int]
    assert function.restype is ctypes.c_int
    assert len(function.calls) == 1


def test_windows_sends_nothing_when_the_call_fails() -> None:
    assert accept_language({}, "win32", fake_kernel32("", result=0)) is None
