"""Fixtures of the agent's tests.

The agent is its own distribution and never imports Django: `pytest agent/tests` from the
repository root finds agent/pyproject.toml as its configuration, so the root conftest.py (the
Django fixtures) is outside the conftest search and never loaded, and pytest-django is off.

The X tests need Xvfb and the tools in harness.X_TOOLS (Debian: harness.X_PACKAGES); without
them they skip with the reason, unless CALLVAULT_E2E_STRICT=1 (CI), where they fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import harness


@pytest.fixture(autouse=True)
def agent_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own config and state folders, and never the user's key store."""
    monkeypatch.setenv("CALLVAULT_AGENT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CALLVAULT_AGENT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CALLVAULT_AGENT_NO_KEYRING", "1")
    return tmp_path


def unavailable(reason: str) -> None:
    if harness.strict():
        pytest.fail(f"CALLVAULT_E2E_STRICT=1 and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def desktop() -> Iterator[harness.Desktop]:
    """One Xvfb display for the session, with the drawing of harness.desktop()."""
    missing = harness.missing_x_tools()
    if missing:
        unavailable(f"{', '.join(missing)} not installed (apt-get install {harness.X_PACKAGES})")
    with harness.desktop() as desk:
        yield desk


@pytest.fixture
def on_desktop(desktop: harness.Desktop, monkeypatch: pytest.MonkeyPatch) -> harness.Desktop:
    """DISPLAY points at the test display for code run in this process."""
    monkeypatch.setenv("DISPLAY", desktop.display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_ID", raising=False)
    return desktop
