"""Windows through ctypes: idle from GetLastInputInfo, the foreground window's title and
program (GetForegroundWindow, GetWindowTextW, psapi's GetProcessImageFileNameW), a locked
workstation from the input desktop.

Written against the documented Win32 signatures and unit-tested with fake libraries
(tests/test_windows.py); not tested on a real Windows machine.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from callvault_agent.platforms import Window

# Fixed-width types, so the structures have Windows' layout wherever the tests run.
DWORD = ctypes.c_uint32
BOOL = ctypes.c_int32
UINT = ctypes.c_uint32
HANDLE = ctypes.c_void_p
HWND = ctypes.c_void_p
HDESK = ctypes.c_void_p
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
DESKTOP_SWITCHDESKTOP = 0x0100
MAX_PATH_CHARS = 32768
MAX_TITLE_CHARS = 4096


class LASTINPUTINFO(ctypes.Structure):
    """winuser.h: cbSize must be sizeof(LASTINPUTINFO) = 8."""

    _fields_ = [("cbSize", UINT), ("dwTime", DWORD)]


def _declare(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


def _system_libraries() -> tuple[Any, Any, Any]:
    if sys.platform == "win32":
        return (
            ctypes.WinDLL("user32", use_last_error=True),
            ctypes.WinDLL("kernel32", use_last_error=True),
            ctypes.WinDLL("psapi", use_last_error=True),
        )
    raise RuntimeError("the Windows platform needs Windows")


class WindowsPlatform:
    """The libraries can be given (tests pass fakes); by default the system's own."""

    name = "windows"

    def __init__(self, user32: Any = None, kernel32: Any = None, psapi: Any = None) -> None:
        if user32 is None or kernel32 is None or psapi is None:
            user32, kernel32, psapi = _system_libraries()
        self._last_input = _declare(user32, "GetLastInputInfo", BOOL, ctypes.POINTER(LASTINPUTINFO))
        self._ticks = _declare(kernel32, "GetTickCount", DWORD)
        self._foreground = _declare(user32, "GetForegroundWindow", HWND)
        self._title_length = _declare(user32, "GetWindowTextLengthW", ctypes.c_int, HWND)
        self._title = _declare(
            user32, "GetWindowTextW", ctypes.c_int, HWND, ctypes.c_wchar_p, ctypes.c_int
        )
        self._window_pid = _declare(
            user32, "GetWindowThreadProcessId", DWORD, HWND, ctypes.POINTER(DWORD)
        )
        self._open_process = _declare(kernel32, "OpenProcess", HANDLE, DWORD, BOOL, DWORD)
        self._close_handle = _declare(kernel32, "CloseHandle", BOOL, HANDLE)
        self._image_name = _declare(
            psapi, "GetProcessImageFileNameW", DWORD, HANDLE, ctypes.c_wchar_p, DWORD
        )
        self._open_desktop = _declare(user32, "OpenInputDesktop", HDESK, DWORD, BOOL, DWORD)
        self._switch_desktop = _declare(user32, "SwitchDesktop", BOOL, HDESK)
        self._close_desktop = _declare(user32, "CloseDesktop", BOOL, HDESK)

    def close(self) -> None:
        pass

    def idle_seconds(self) -> float:
        info = LASTINPUTINFO(cbSize=ctypes.sizeof(LASTINPUTINFO))
        if not self._last_input(ctypes.byref(info)):
            return 0.0
        # Both are 32-bit millisecond tick counts: the difference is right across the
        # 49.7-day wrap when taken modulo 2**32.
        return float((int(self._ticks()) - int(info.dwTime)) & 0xFFFFFFFF) / 1000.0

    def locked(self) -> bool:
        # While the lock screen (the secure Winlogon desktop) has the input, a user process
        # can neither open nor switch to the input desktop.
        desktop = self._open_desktop(0, False, DESKTOP_SWITCHDESKTOP)
        if not desktop:
            return True
        try:
            return not self._switch_desktop(desktop)
        finally:
            self._close_desktop(desktop)

    def foreground(self) -> Window | None:
        hwnd = self._foreground()
        if not hwnd:
            return None
        length = min(int(self._title_length(hwnd)), MAX_TITLE_CHARS)
        title = None
        if length > 0:
            buffer = ctypes.create_unicode_buffer(length + 1)
            if self._title(hwnd, buffer, length + 1) > 0:
                title = buffer.value or None
        return Window(app=self._process_name(hwnd), title=title)

    def _process_name(self, hwnd: Any) -> str | None:
        pid = DWORD()
        self._window_pid(hwnd, ctypes.byref(pid))
        if not pid.value:
            return None
        process = self._open_process(PROCESS_QUERY_LIMITED_INFORMATION, False, pid.value)
        if not process:
            return None  # a protected or elevated process: its name is not ours to read
        try:
            buffer = ctypes.create_unicode_buffer(MAX_PATH_CHARS)
            if not self._image_name(process, buffer, MAX_PATH_CHARS):
                return None
            # \Device\HarddiskVolume3\Program Files\Mozilla Firefox\firefox.exe -> firefox.exe
            return buffer.value.rsplit("\\", 1)[-1] or None
        finally:
            self._close_handle(process)
