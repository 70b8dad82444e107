"""The X11 platform on a real X server (Xvfb, openbox for EWMH, xterm, xdotool)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import harness
from callvault_agent.platforms import detect
from callvault_agent.platforms.x11 import X11Platform, logind_locked_hint, running_locker

pytestmark = pytest.mark.xvfb


def test_the_foreground_window_is_read_through_ewmh(on_desktop: harness.Desktop) -> None:
    platform = detect()
    try:
        assert platform.name == "linux-x11"
        window = platform.foreground()
        assert window is not None
        assert window.title == harness.WINDOW_TITLE
        assert window.app == "XTerm"  # WM_CLASS's class
    finally:
        platform.close()


def test_idle_time_grows_without_input_and_resets_with_it(on_desktop: harness.Desktop) -> None:
    platform = X11Platform()
    try:
        on_desktop.idle_reset()
        time.sleep(1.2)
        before = platform.idle_seconds()
        assert before >= 1.0
        on_desktop.idle_reset()
        assert platform.idle_seconds() < before
    finally:
        platform.close()


def test_an_active_screen_saver_counts_as_locked(on_desktop: harness.Desktop) -> None:
    platform = X11Platform()
    platform.lock_probes = []
    try:
        assert platform.locked() is False
        on_desktop.run("xset", "s", "activate")
        assert harness.wait_for(platform.locked, 5, "the screen saver state")
        on_desktop.run("xset", "s", "reset")
        assert harness.wait_for(lambda: not platform.locked(), 5, "the screen saver to end")
    finally:
        on_desktop.run("xset", "s", "reset")
        platform.close()


def test_a_running_screen_locker_is_found(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, name in (("1", "systemd"), ("4242", "i3lock"), ("self", "x")):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "comm").write_text(name + "\n")
    assert running_locker(proc) is True
    (proc / "4242" / "comm").write_text("bash\n")
    assert running_locker(proc) is False


def test_logind_locked_hint_is_asked_for_this_session(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="yes\n", stderr="")

    monkeypatch.setenv("XDG_SESSION_ID", "c7")
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/loginctl")
    assert logind_locked_hint(run)() is True
    assert calls == [
        ["/usr/bin/loginctl", "show-session", "c7", "--property=LockedHint", "--value"]
    ]
    monkeypatch.delenv("XDG_SESSION_ID")
    assert logind_locked_hint(run)() is False


def test_a_real_screenshot_shows_the_drawing(on_desktop: harness.Desktop) -> None:
    from callvault_agent.capture import grab_screen

    image = grab_screen()
    assert image.size == harness.SCREEN
    assert image.getpixel((harness.SCREEN[0] - 5, harness.SCREEN[1] - 5)) == harness.ROOT_COLOUR
    x, y = harness.WINDOW_GEOMETRY
    assert image.getpixel((x + 100, y + 100)) == harness.WINDOW_COLOUR
