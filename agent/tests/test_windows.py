"""The Windows platform at its boundary: our ctypes calls against fake user32/kernel32/psapi
objects that check the call shapes (argument types, structure sizes, buffers) the way the real
DLLs would use them. Written to the Win32 documentation; not run on a real Windows machine."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from callvault_agent.platforms import Window
from callvault_agent.platforms.windows import (
    BOOL,
    DESKTOP_SWITCHDESKTOP,
    DWORD,
    HANDLE,
    LASTINPUTINFO,
    PROCESS_QUERY_LIMITED_INFORMATION,
    WindowsPlatform,
)


class FakeFunction:
    """Stands for a foreign function: records calls, keeps argtypes/restype as set."""

    def __init__(self, name: str, impl: Any) -> None:
        self.name = name
        self.impl = impl
        self.calls: list[tuple[Any, ...]] = []
        self.argtypes: list[Any] | None = None
        self.restype: Any = "unset"

    def __call__(self, *args: Any) -> Any:
        assert self.argtypes is not None, f"{self.name} called before its argtypes were set"
        assert len(args) == len(self.argtypes), f"{self.name}: {len(args)} arguments"
        self.calls.append(args)
        return self.impl(*args)


class FakeDLL:
    def __init__(self, **impls: Any) -> None:
        self.functions = {name: FakeFunction(name, impl) for name, impl in impls.items()}

    def __getattr__(self, name: str) -> FakeFunction:
        try:
            return self.functions[name]
        except KeyError:
            raise AttributeError(f"function '{name}' not found") from None


def target(pointer: Any) -> Any:
    """What a byref() points at, as the DLL would write through it."""
    return pointer._obj


class FakeWindows:
    """A desktop: the tick count, last input, a foreground window and its process."""

    def __init__(self) -> None:
        self.ticks = 100_000
        self.last_input = 95_500
        self.hwnd = 0x1234
        self.title = "Order 555 - callvault — Mozilla Firefox"
        self.pid = 4321
        self.image = r"\Device\HarddiskVolume3\Program Files\Mozilla Firefox\firefox.exe"
        self.secure_desktop = False
        self.process_handle = 0x99
        self.closed: list[Any] = []

        def get_last_input_info(info: Any) -> int:
            assert target(info).cbSize == ctypes.sizeof(LASTINPUTINFO) == 8
            target(info).dwTime = self.last_input
            return 1

        def get_window_text(hwnd: Any, buffer: Any, size: int) -> int:
            assert hwnd == self.hwnd
            assert ctypes.sizeof(buffer) // ctypes.sizeof(ctypes.c_wchar) >= size
            text = self.title[: size - 1]
            buffer.value = text
            return len(text)

        def get_pid(hwnd: Any, pid: Any) -> int:
            assert isinstance(target(pid), DWORD)
            target(pid).value = self.pid
            return 77

        def open_process(access: int, inherit: bool, pid: int) -> int:
            assert access == PROCESS_QUERY_LIMITED_INFORMATION and pid == self.pid
            return self.process_handle

        def image_name(handle: Any, buffer: Any, size: int) -> int:
            assert handle == self.process_handle
            buffer.value = self.image
            return len(self.image)

        def open_desktop(flags: int, inherit: bool, access: int) -> int:
            assert access == DESKTOP_SWITCHDESKTOP
            return 0 if self.secure_desktop else 0x55

        self.user32 = FakeDLL(
            GetLastInputInfo=get_last_input_info,
            GetForegroundWindow=lambda: self.hwnd,
            GetWindowTextLengthW=lambda hwnd: len(self.title),
            GetWindowTextW=get_window_text,
            GetWindowThreadProcessId=get_pid,
            OpenInputDesktop=open_desktop,
            SwitchDesktop=lambda desk: 1,
            CloseDesktop=lambda desk: self.close("desktop", desk),
        )
        self.kernel32 = FakeDLL(
            GetTickCount=lambda: self.ticks,
            OpenProcess=open_process,
            CloseHandle=lambda handle: self.close("handle", handle),
        )
        self.psapi = FakeDLL(GetProcessImageFileNameW=image_name)

    def close(self, kind: str, handle: Any) -> int:
        self.closed.append((kind, handle))
        return 1

    def platform(self) -> WindowsPlatform:
        return WindowsPlatform(self.user32, self.kernel32, self.psapi)


@pytest.fixture
def win() -> FakeWindows:
    return FakeWindows()


def test_signatures_follow_the_win32_headers(win: FakeWindows) -> None:
    win.platform()
    u, k, p = win.user32.functions, win.kernel32.functions, win.psapi.functions
    assert u["GetLastInputInfo"].argtypes == [ctypes.POINTER(LASTINPUTINFO)]
    assert u["GetLastInputInfo"].restype is BOOL
    assert u["GetWindowTextW"].argtypes == [ctypes.c_void_p, ctypes.c_wchar_p, ctypes.c_int]
    assert u["GetWindowThreadProcessId"].argtypes == [ctypes.c_void_p, ctypes.POINTER(DWORD)]
    assert k["OpenProcess"].argtypes == [DWORD, BOOL, DWORD] and k["OpenProcess"].restype is HANDLE
    assert k["GetTickCount"].restype is DWORD and ctypes.sizeof(DWORD) == 4
    assert p["GetProcessImageFileNameW"].argtypes == [HANDLE, ctypes.c_wchar_p, DWORD]


def test_idle_is_the_time_since_the_last_input(win: FakeWindows) -> None:
    assert win.platform().idle_seconds() == pytest.approx(4.5)


def test_idle_survives_the_tick_counters_wrap(win: FakeWindows) -> None:
    win.last_input = 2**32 - 1000  # input 1 s before the 49.7-day wrap
    win.ticks = 2000  # 2 s after it
    assert win.platform().idle_seconds() == pytest.approx(3.0)


def test_foreground_window_title_and_process_name(win: FakeWindows) -> None:
    assert win.platform().foreground() == Window(app="firefox.exe", title=win.title)
    assert ("handle", win.process_handle) in win.closed  # no handle leaks


def test_a_process_it_may_not_open_leaves_the_program_unknown(win: FakeWindows) -> None:
    win.process_handle = 0
    assert win.platform().foreground() == Window(app=None, title=win.title)


def test_no_foreground_window(win: FakeWindows) -> None:
    win.hwnd = 0
    assert win.platform().foreground() is None


def test_the_lock_screen_counts_as_locked(win: FakeWindows) -> None:
    platform = win.platform()
    assert platform.locked() is False
    assert ("desktop", 0x55) in win.closed
    win.secure_desktop = True
    assert platform.locked() is True
