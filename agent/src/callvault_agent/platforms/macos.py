"""macOS through ctypes: idle seconds from Quartz (CGEventSourceSecondsSinceLastEventType), a
locked screen or a switched-out user from CGSessionCopyCurrentDictionary, and the frontmost
program from AppKit's NSWorkspace when PyObjC is installed (window titles would need the
Accessibility permission, so none are sent).

Written against the documented C interfaces and unit-tested with fake libraries
(tests/test_macos.py); not tested on a real Mac.
"""

from __future__ import annotations

import ctypes
from typing import Any

from callvault_agent.platforms import Window

CORE_GRAPHICS = "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics"
CORE_FOUNDATION = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"
COMBINED_SESSION_STATE = 0  # kCGEventSourceStateCombinedSessionState
ANY_INPUT_EVENT = 0xFFFFFFFF  # kCGAnyInputEventType
UTF8 = 0x08000100  # kCFStringEncodingUTF8
SCREEN_LOCKED_KEY = b"CGSSessionScreenIsLocked"
ON_CONSOLE_KEY = b"kCGSSessionOnConsoleKey"


def _declare(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


def _frontmost_app() -> str | None:
    """The frontmost application's name through PyObjC, or None without it."""
    try:
        from AppKit import NSWorkspace
    except ImportError:
        return None
    app = NSWorkspace.sharedWorkspace().frontmostApplication()
    name = app.localizedName() if app is not None else None
    return str(name) if name else None


class MacPlatform:
    """The frameworks can be given (tests pass fakes); by default the system's own."""

    name = "macos"

    def __init__(
        self, quartz: Any = None, core_foundation: Any = None, frontmost: Any = _frontmost_app
    ) -> None:
        quartz = quartz if quartz is not None else ctypes.CDLL(CORE_GRAPHICS)
        cf = core_foundation if core_foundation is not None else ctypes.CDLL(CORE_FOUNDATION)
        self._since_last = _declare(
            quartz,
            "CGEventSourceSecondsSinceLastEventType",
            ctypes.c_double,
            ctypes.c_int32,
            ctypes.c_uint32,
        )
        self._session = _declare(quartz, "CGSessionCopyCurrentDictionary", ctypes.c_void_p)
        self._cfstring = _declare(
            cf,
            "CFStringCreateWithCString",
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_uint32,
        )
        self._get = _declare(
            cf, "CFDictionaryGetValue", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
        )
        self._bool = _declare(cf, "CFBooleanGetValue", ctypes.c_bool, ctypes.c_void_p)
        self._release = _declare(cf, "CFRelease", None, ctypes.c_void_p)
        self._frontmost = frontmost

    def close(self) -> None:
        pass

    def idle_seconds(self) -> float:
        return max(0.0, float(self._since_last(COMBINED_SESSION_STATE, ANY_INPUT_EVENT)))

    def locked(self) -> bool:
        session = self._session()
        if not session:
            return True  # no window-server session: nobody is at this screen
        try:
            if self._flag(session, SCREEN_LOCKED_KEY) is True:
                return True
            return self._flag(session, ON_CONSOLE_KEY) is False  # switched to another user
        finally:
            self._release(session)

    def _flag(self, dictionary: Any, key: bytes) -> bool | None:
        cf_key = self._cfstring(None, key, UTF8)
        if not cf_key:
            return None
        try:
            value = self._get(dictionary, cf_key)
            return bool(self._bool(value)) if value else None
        finally:
            self._release(cf_key)

    def foreground(self) -> Window | None:
        app = self._frontmost()
        return Window(app=app, title=None) if app else None
