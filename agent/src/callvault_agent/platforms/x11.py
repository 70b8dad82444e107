"""Linux X11 through ctypes: idle and screen saver from the XScreenSaver extension (libXss),
the foreground window from EWMH properties (_NET_ACTIVE_WINDOW, _NET_WM_NAME, WM_CLASS,
_NET_WM_PID), a locked screen from the screen saver state, a running screen locker, or logind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callvault_agent.platforms import PlatformError, Window

Display = ctypes.c_void_p
XID = ctypes.c_ulong
Atom = ctypes.c_ulong
SUCCESS = 0
ANY_PROPERTY_TYPE = 0
SCREEN_SAVER_ON = 1
# Screen lockers that run only while the screen is locked (daemons that always run, such as
# xscreensaver or light-locker, are not in the list: their presence says nothing).
LOCKERS = frozenset(
    {"i3lock", "slock", "xsecurelock", "xtrlock", "xlock", "physlock", "alock", "sxlock"}
)
# How long a locker scan or a logind answer is trusted: each costs far more than an X query.
LOCK_CACHE_SECONDS = 10.0


class XScreenSaverInfo(ctypes.Structure):
    """From <X11/extensions/scrnsaver.h>."""

    _fields_ = [
        ("window", XID),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),  # milliseconds since the last input
        ("eventMask", ctypes.c_ulong),
    ]


ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _ignore(_display: Any, _event: Any) -> int:
    # Xlib's default handler exits the process; a window that closed between two requests
    # (BadWindow) is routine here, and the failing call's status already says so.
    return 0


# Module-level, so the C callback outlives every display.
_ignore_x_error: Any = ERROR_HANDLER(_ignore)


def _load(name: str, soname: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name) or soname
    try:
        return ctypes.CDLL(path)
    except OSError as exc:
        raise PlatformError(
            f"cannot load {soname} ({exc}): install it (Debian: libx11-6, libxss1)"
        ) from None


def _declare(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


class X11Platform:
    """One connection to the X display for the agent's life."""

    name = "linux-x11"

    def __init__(self, display: str | None = None) -> None:
        x11 = _load("X11", "libX11.so.6")
        xss = _load("Xss", "libXss.so.1")
        self._open = _declare(x11, "XOpenDisplay", Display, ctypes.c_char_p)
        self._close = _declare(x11, "XCloseDisplay", ctypes.c_int, Display)
        self._root = _declare(x11, "XDefaultRootWindow", XID, Display)
        self._intern = _declare(x11, "XInternAtom", Atom, Display, ctypes.c_char_p, ctypes.c_int)
        self._free = _declare(x11, "XFree", ctypes.c_int, ctypes.c_void_p)
        self._get_property = _declare(
            x11,
            "XGetWindowProperty",
            ctypes.c_int,
            Display,
            XID,
            Atom,
            ctypes.c_long,
            ctypes.c_long,
            ctypes.c_int,
            Atom,
            ctypes.POINTER(Atom),
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_ulong),
            ctypes.POINTER(ctypes.c_ulong),
            ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
        )
        set_handler = _declare(x11, "XSetErrorHandler", ctypes.c_void_p, ERROR_HANDLER)
        query_extension = _declare(
            xss,
            "XScreenSaverQueryExtension",
            ctypes.c_int,
            Display,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
        )
        self._query_info = _declare(
            xss,
            "XScreenSaverQueryInfo",
            ctypes.c_int,
            Display,
            XID,
            ctypes.POINTER(XScreenSaverInfo),
        )
        set_handler(_ignore_x_error)
        name = display if display is not None else os.environ.get("DISPLAY", "")
        self.display = self._open(name.encode() or None)
        if not self.display:
            raise PlatformError(f"cannot open the X display {name!r}")
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        if not query_extension(self.display, ctypes.byref(event_base), ctypes.byref(error_base)):
            self.close()
            raise PlatformError("the X server has no MIT-SCREEN-SAVER extension (idle time)")
        self.root = self._root(self.display)
        self._atoms: dict[str, int] = {}
        self._info = XScreenSaverInfo()
        self._lock_checked = -LOCK_CACHE_SECONDS
        self._lock_cached = False
        self.lock_probes: list[Callable[[], bool]] = [running_locker, logind_locked_hint()]

    def close(self) -> None:
        if self.display:
            self._close(self.display)
            self.display = None

    def _screen_saver(self) -> XScreenSaverInfo:
        if not self._query_info(self.display, self.root, ctypes.byref(self._info)):
            raise PlatformError("XScreenSaverQueryInfo failed")
        return self._info

    def idle_seconds(self) -> float:
        return float(self._screen_saver().idle) / 1000.0

    def locked(self) -> bool:
        if self._screen_saver().state == SCREEN_SAVER_ON:
            return True
        now = time.monotonic()
        if now - self._lock_checked >= LOCK_CACHE_SECONDS:
            self._lock_checked = now
            self._lock_cached = any(probe() for probe in self.lock_probes)
        return self._lock_cached

    def foreground(self) -> Window | None:
        active = self._property(self.root, "_NET_ACTIVE_WINDOW")
        if active is None or active[1] != 32 or not active[0]:
            return None
        window = _longs(active[0])[0]
        if not window:
            return None
        title = self._text(window, "_NET_WM_NAME") or self._text(window, "WM_NAME")
        return Window(app=self._app(window), title=title)

    def _app(self, window: int) -> str | None:
        wm_class = self._property(window, "WM_CLASS")
        if wm_class and wm_class[0]:
            # "instance\0Class\0": the class names the program (XTerm, firefox, ...).
            names = [n for n in wm_class[0].split(b"\0") if n]
            if names:
                return names[-1].decode("utf-8", "replace")
        pid = self._property(window, "_NET_WM_PID")
        if pid and pid[1] == 32 and pid[0]:
            try:
                return Path(f"/proc/{_longs(pid[0])[0]}/comm").read_text().strip() or None
            except OSError:
                return None
        return None

    def _text(self, window: int, name: str) -> str | None:
        prop = self._property(window, name)
        if not prop or prop[1] != 8 or not prop[0]:
            return None
        raw, _, type_atom = prop
        encoding = "latin-1" if type_atom == self._atom("STRING") else "utf-8"
        return raw.decode(encoding, "replace").rstrip("\0") or None

    def _atom(self, name: str) -> int:
        if name not in self._atoms:
            self._atoms[name] = int(self._intern(self.display, name.encode(), 0))
        return self._atoms[name]

    def _property(self, window: int, name: str) -> tuple[bytes, int, int] | None:
        """(raw data, format, type) of a window property, or None when absent or gone.

        Format-32 data comes as C longs (8 bytes each on 64-bit Linux), as Xlib returns it.
        """
        actual_type, actual_format = Atom(), ctypes.c_int()
        nitems, after = ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.POINTER(ctypes.c_ubyte)()
        status = self._get_property(
            self.display,
            window,
            self._atom(name),
            0,
            1024,  # in 32-bit units: titles longer than 4 KiB are cut
            0,
            ANY_PROPERTY_TYPE,
            ctypes.byref(actual_type),
            ctypes.byref(actual_format),
            ctypes.byref(nitems),
            ctypes.byref(after),
            ctypes.byref(data),
        )
        if status != SUCCESS or not data:
            return None
        try:
            if not actual_type.value:
                return None
            unit = {8: 1, 16: ctypes.sizeof(ctypes.c_short), 32: ctypes.sizeof(ctypes.c_long)}
            size = nitems.value * unit.get(actual_format.value, 1)
            return ctypes.string_at(data, size), actual_format.value, int(actual_type.value)
        finally:
            self._free(data)


def _longs(raw: bytes) -> list[int]:
    count = len(raw) // ctypes.sizeof(ctypes.c_ulong)
    return list(
        (ctypes.c_ulong * count).from_buffer_copy(raw[: count * ctypes.sizeof(ctypes.c_ulong)])
    )


def running_locker(proc: Path = Path("/proc")) -> bool:
    """Whether a screen locker of this user is running."""
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            if (entry / "comm").read_text().strip() in LOCKERS:
                return True
        except OSError:
            continue  # the process ended meanwhile
    return False


def logind_locked_hint(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> Callable[[], bool]:
    """A probe of logind's LockedHint for this session (GNOME, KDE and others set it), or one
    that answers False when there is no logind session or no loginctl."""
    session = os.environ.get("XDG_SESSION_ID")
    loginctl = shutil.which("loginctl")

    def probe() -> bool:
        if not session or not loginctl:
            return False
        try:
            result = run(
                [loginctl, "show-session", session, "--property=LockedHint", "--value"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0 and result.stdout.strip() == "yes"

    return probe
