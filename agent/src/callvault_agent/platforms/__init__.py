"""One small interface over the desktop: idle time, locked screen, foreground window.

Linux X11 is tested on a real (virtual) X server; Windows and macOS are written against their
documented C interfaces and unit-tested with fake libraries, not on real machines.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol


class PlatformError(RuntimeError):
    """The desktop cannot be observed here (no display, unsupported session)."""


@dataclass(frozen=True)
class Window:
    """The foreground window: its program and title (either may be unknown)."""

    app: str | None
    title: str | None


class Platform(Protocol):
    """What the agent asks the desktop."""

    name: str  # as the server knows it: linux-x11, windows, macos

    def idle_seconds(self) -> float:
        """Seconds since the last keyboard or mouse input."""
        ...

    def locked(self) -> bool:
        """Whether the screen is locked or the screen saver is on (the operator is away)."""
        ...

    def foreground(self) -> Window | None:
        """The window in front, or None when there is none."""
        ...

    def close(self) -> None: ...


def platform_name() -> str:
    """The platform as the server knows it, without opening anything."""
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux-x11"


def detect() -> Platform:
    """The platform this agent runs on, connected."""
    if sys.platform == "win32":
        from callvault_agent.platforms.windows import WindowsPlatform

        return WindowsPlatform()
    if sys.platform == "darwin":
        from callvault_agent.platforms.macos import MacPlatform

        return MacPlatform()
    if not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY"):
            raise PlatformError("Wayland sessions are not supported: log in to an X11 session")
        raise PlatformError("no X display (DISPLAY is not set)")
    from callvault_agent.platforms.x11 import X11Platform

    return X11Platform()
