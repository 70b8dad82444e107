"""Where the agent keeps its enrolment (server, device id, token) and its state (queue, policy).

The device token is a password: it lives in the OS key store when the `keyring` package is
installed and has a working backend, else in a file only the user can read (0600). It is never
printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APP = "callvault-agent"
KEYRING_SERVICE = "callvault-agent"


def _base(env: str, windows: str, macos: str, xdg: str, xdg_default: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get(windows) or home / "AppData" / "Roaming") / APP
    if sys.platform == "darwin":
        return home / "Library" / macos / APP
    return Path(os.environ.get(xdg) or home / xdg_default) / APP


def config_dir() -> Path:
    """$CALLVAULT_AGENT_CONFIG_DIR, else the platform's per-user configuration folder."""
    return _base(
        "CALLVAULT_AGENT_CONFIG_DIR", "APPDATA", "Application Support", "XDG_CONFIG_HOME", ".config"
    )


def state_dir() -> Path:
    """$CALLVAULT_AGENT_STATE_DIR, else the platform's per-user state folder (the queue)."""
    return _base(
        "CALLVAULT_AGENT_STATE_DIR",
        "LOCALAPPDATA",
        "Application Support",
        "XDG_STATE_HOME",
        ".local/state",
    )


@dataclass
class Enrolment:
    """This PC's device at one server."""

    server: str
    device_id: int
    token: str = field(repr=False)
    cafile: str | None = None
    kept_in: str = "file"  # "file" or "keyring"


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, replacing any old one atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _keyring() -> Any | None:
    """The keyring module when installed with a real backend, else None."""
    if os.environ.get("CALLVAULT_AGENT_NO_KEYRING") == "1":
        return None
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration is the same as none
        return None
    # The fail and null backends, and a chain of nothing, have no priority above zero.
    if isinstance(backend, fail.Keyring) or float(getattr(backend, "priority", 0)) <= 0:
        return None
    return keyring


class Store:
    """The enrolment file (config.json) and the token, in `directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.config_path = self.directory / "config.json"
        self.token_path = self.directory / "token"

    def load(self) -> Enrolment | None:
        """The saved enrolment, or None when this PC is not enrolled."""
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        store = data.get("kept_in", "file")
        token: str | None
        if store == "keyring":
            ring = _keyring()
            token = ring.get_password(KEYRING_SERVICE, data["server"]) if ring else None
        else:
            try:
                token = self.token_path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                token = None
        if not token:
            log.error("the device token is missing (%s): enrol again", store)
            return None
        return Enrolment(
            server=data["server"],
            device_id=int(data["device_id"]),
            token=token,
            cafile=data.get("cafile"),
            kept_in=store,
        )

    def save(self, enrolment: Enrolment) -> Enrolment:
        """Store the token (key store if available, else the 0600 file) and the enrolment."""
        ring = _keyring()
        store = "file"
        if ring is not None:
            try:
                ring.set_password(KEYRING_SERVICE, enrolment.server, enrolment.token)
                store = "keyring"
            except Exception as exc:  # a locked or refusing key store: fall back to the file
                log.warning("the OS key store refused the token (%s): using a private file", exc)
        if store == "file":
            _write_private(self.token_path, enrolment.token + "\n")
        else:
            self.token_path.unlink(missing_ok=True)
        data = {
            "server": enrolment.server,
            "device_id": enrolment.device_id,
            "cafile": enrolment.cafile,
            "kept_in": store,
        }
        _write_private(self.config_path, json.dumps(data, indent=2) + "\n")
        enrolment.kept_in = store
        return enrolment

    def forget(self) -> list[str]:
        """Remove the token and the enrolment; returns what was removed."""
        removed: list[str] = []
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            data = {}
        if data.get("kept_in") == "keyring":
            ring = _keyring()
            if ring is not None:
                try:
                    ring.delete_password(KEYRING_SERVICE, data["server"])
                    removed.append("the token in the OS key store")
                except Exception as exc:  # already gone is fine
                    log.warning("could not remove the token from the OS key store: %s", exc)
        for path in (self.token_path, self.config_path):
            if path.exists():
                path.unlink()
                removed.append(str(path))
        return removed
