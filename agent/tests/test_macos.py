"""The macOS platform at its boundary: our ctypes calls against fake CoreGraphics and
CoreFoundation objects (call shapes, constants, releases). Written to Apple's documentation;
not run on a real Mac."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from callvault_agent.platforms import Window
from callvault_agent.platforms.macos import (
    ANY_INPUT_EVENT,
    COMBINED_SESSION_STATE,
    ON_CONSOLE_KEY,
    SCREEN_LOCKED_KEY,
    UTF8,
    MacPlatform,
)
from test_windows import FakeDLL

SESSION = 0x5E55


class FakeMac:
    def __init__(self) -> None:
        self.idle = 42.5
        self.session: dict[bytes, bool] | None = {ON_CONSOLE_KEY: True}
        self.strings: dict[int, bytes] = {}
        self.released: list[int] = []
        self.true, self.false = 0x7001, 0x7000

        def since_last(state: int, event: int) -> float:
            assert (state, event) == (COMBINED_SESSION_STATE, ANY_INPUT_EVENT)
            return self.idle

        def make_string(allocator: Any, text: bytes, encoding: int) -> int:
            assert allocator is None and encoding == UTF8
            ref = 0x9000 + len(self.strings)
            self.strings[ref] = text
            return ref

        def get_value(dictionary: int, key: int) -> int | None:
            assert dictionary == SESSION and self.session is not None
            value = self.session.get(self.strings[key])
            return None if value is None else self.true if value else self.false

        self.quartz = FakeDLL(
            CGEventSourceSecondsSinceLastEventType=since_last,
            CGSessionCopyCurrentDictionary=lambda: None if self.session is None else SESSION,
        )
        self.cf = FakeDLL(
            CFStringCreateWithCString=make_string,
            CFDictionaryGetValue=get_value,
            CFBooleanGetValue=lambda ref: ref == self.true,
            CFRelease=self.released.append,
        )

    def platform(self, frontmost: Any = lambda: "Safari") -> MacPlatform:
        return MacPlatform(self.quartz, self.cf, frontmost)


@pytest.fixture
def mac() -> FakeMac:
    return FakeMac()


def test_signatures_follow_the_headers(mac: FakeMac) -> None:
    mac.platform()
    since = mac.quartz.functions["CGEventSourceSecondsSinceLastEventType"]
    assert since.argtypes == [ctypes.c_int32, ctypes.c_uint32]
    assert since.restype is ctypes.c_double
    assert mac.cf.functions["CFRelease"].restype is None


def test_idle_seconds_from_quartz(mac: FakeMac) -> None:
    assert mac.platform().idle_seconds() == 42.5


def test_unlocked_session_and_every_copy_released(mac: FakeMac) -> None:
    assert mac.platform().locked() is False
    assert SESSION in mac.released
    assert set(mac.strings) <= set(mac.released)  # the CFStrings it made, too


def test_locked_screen(mac: FakeMac) -> None:
    mac.session = {SCREEN_LOCKED_KEY: True, ON_CONSOLE_KEY: True}
    assert mac.platform().locked() is True


def test_switched_out_user_counts_as_away(mac: FakeMac) -> None:
    mac.session = {ON_CONSOLE_KEY: False}
    assert mac.platform().locked() is True


def test_no_window_server_session_counts_as_away(mac: FakeMac) -> None:
    mac.session = None
    assert mac.platform().locked() is True


def test_frontmost_program_without_a_title(mac: FakeMac) -> None:
    assert mac.platform().foreground() == Window(app="Safari", title=None)
    assert mac.platform(frontmost=lambda: None).foreground() is None
