"""Where the agent keeps its enrolment (server, device id, token) and its state (queue, policy).

The device token is a password and belongs to this PC. On Linux and macOS it lives in the OS
key store when the `keyring` package is installed and has a working backend, else in a file
only the user can read (0600). On Windows it is encrypted with DPAPI for the user into a file
under %LOCALAPPDATA%, which a roaming profile does not copy to other PCs (keyring's Windows
Credential Manager entries are written to roam, so it is not used there). It is never printed
or logged.
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


def _base(env: str, xdg: str, xdg_default: str, platform: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    home = Path.home()
    if platform == "win32":
        # Local, not roaming (%APPDATA%): a roaming profile would copy the token to every PC
        # the user logs on to, while the device, its queue and its sequence are this PC's.
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP
    return Path(os.environ.get(xdg) or home / xdg_default) / APP


def config_dir(platform: str = sys.platform) -> Path:
    """$CALLVAULT_AGENT_CONFIG_DIR, else the platform's per-user configuration folder."""
    return _base("CALLVAULT_AGENT_CONFIG_DIR", "XDG_CONFIG_HOME", ".config", platform)


def state_dir(platform: str = sys.platform) -> Path:
    """$CALLVAULT_AGENT_STATE_DIR, else the platform's per-user state folder (the queue)."""
    return _base("CALLVAULT_AGENT_STATE_DIR", "XDG_STATE_HOME", ".local/state", platform)


def roaming_dir() -> Path | None:
    """Where agent 0.1.0 kept enrolment and token on Windows (roaming %APPDATA%)."""
    appdata = os.environ.get("APPDATA")
    return Path(appdata) / APP if appdata else None


@dataclass
class Enrolment:
    """This PC's device at one server."""

    server: str
    device_id: int
    token: str = field(repr=False)
    cafile: str | None = None
    kept_in: str = "file"  # "file", "keyring" or "dpapi"


def _write_private(path: Path, text: str) -> None:
    """Write a text file readable by its owner only, replacing any old one atomically."""
    _write_private_bytes(path, text.encode("utf-8"))


def _write_private_bytes(path: Path, content: bytes) -> None:
    """Write a file readable by its owner only, replacing any old one atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
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
    """The enrolment file (config.json) and the token, in `directory`.

    `platform` and `dpapi` (a callvault_agent.dpapi.Dpapi) can be given: the tests run the
    Windows path with fake system libraries.
    """

    def __init__(
        self, directory: Path | None = None, *, platform: str = sys.platform, dpapi: Any = None
    ) -> None:
        self.platform = platform
        self.directory = directory or config_dir(platform)
        self.config_path = self.directory / "config.json"
        self.token_path = self.directory / "token"
        self.sealed_token_path = self.directory / "token.dpapi"
        self._dpapi = dpapi

    def dpapi(self) -> Any:
        if self._dpapi is None:
            from callvault_agent.dpapi import Dpapi

            self._dpapi = Dpapi()
        return self._dpapi

    def load(self) -> Enrolment | None:
        """The saved enrolment, or None when this PC is not enrolled."""
        if self.platform == "win32":
            self._move_from_roaming()
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        store = data.get("kept_in", "file")
        token: str | None = None
        if store == "keyring":
            ring = _keyring()
            token = ring.get_password(KEYRING_SERVICE, data["server"]) if ring else None
        elif store == "dpapi":
            try:
                sealed = self.sealed_token_path.read_bytes()
                token = self.dpapi().unprotect(sealed).decode("utf-8")
            except FileNotFoundError:
                token = None
            except (OSError, UnicodeDecodeError) as exc:
                log.error("the device token cannot be decrypted (%s)", exc)
                token = None
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
        """Store the token (Windows: DPAPI; else the key store if available; else the 0600
        file) and the enrolment."""
        store = "file"
        if self.platform == "win32":
            try:
                sealed = self.dpapi().protect(enrolment.token.encode("utf-8"))
                _write_private_bytes(self.sealed_token_path, sealed)
                store = "dpapi"
            except OSError as exc:
                log.warning("DPAPI refused the token (%s): using a private file", exc)
        else:
            ring = _keyring()
            if ring is not None:
                try:
                    ring.set_password(KEYRING_SERVICE, enrolment.server, enrolment.token)
                    store = "keyring"
                except Exception as exc:  # a locked or refusing key store: use the file
                    log.warning(
                        "the OS key store refused the token (%s): using a private file", exc
                    )
        if store == "file":
            _write_private(self.token_path, enrolment.token + "\n")
        else:
            self.token_path.unlink(missing_ok=True)
        if store != "dpapi":
            self.sealed_token_path.unlink(missing_ok=True)
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
        paths = [self.token_path, self.sealed_token_path, self.config_path]
        old = roaming_dir() if self.platform == "win32" else None
        if old is not None and old != self.directory:
            paths += [old / "token", old / "config.json"]  # left by agent 0.1.0
        for path in paths:
            if path.exists():
                path.unlink()
                removed.append(str(path))
        return removed

    def _move_from_roaming(self) -> None:
        """Agent 0.1.0 kept enrolment and token in roaming %APPDATA%: move them here (the
        token sealed with DPAPI) and delete the roaming copies, so they stop travelling."""
        old = roaming_dir()
        if old is None or old == self.directory or self.config_path.exists():
            return
        old_config, old_token = old / "config.json", old / "token"
        try:
            data = json.loads(old_config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        token: str | None = None
        ring = _keyring() if data.get("kept_in") == "keyring" else None
        if ring is not None:
            token = ring.get_password(KEYRING_SERVICE, data.get("server"))
        elif data.get("kept_in", "file") == "file":
            try:
                token = old_token.read_text(encoding="utf-8").strip()
            except OSError:
                token = None
        if not token or not isinstance(data.get("server"), str):
            log.warning("an old enrolment in %s has no usable token: enrol again", old)
            return
        self.save(
            Enrolment(
                server=data["server"],
                device_id=int(data["device_id"]),
                token=token,
                cafile=data.get("cafile"),
            )
        )
        if ring is not None:
            try:
                ring.delete_password(KEYRING_SERVICE, data["server"])
            except Exception as exc:  # gone already is fine
                log.warning("could not remove the roaming token from the key store: %s", exc)
        for path in (old_token, old_config):
            path.unlink(missing_ok=True)
        log.warning(
            "moved the enrolment from %s (roaming) to %s (this PC only)", old, self.directory
        )
