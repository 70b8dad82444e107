"""Where the token is kept: the OS key store through `keyring` when it has a working backend
(a stand-in module here: the package is optional and not installed), else a 0600 file."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from callvault_agent.config import Enrolment, Store


class FailKeyring:
    priority = 0


class MemoryKeyring:
    priority = 1

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.saved: dict[tuple[str, str], str] = {}


def install_keyring(monkeypatch: pytest.MonkeyPatch, backend: object) -> dict[tuple[str, str], str]:
    saved: dict[tuple[str, str], str] = {}

    def set_password(service: str, user: str, secret: str) -> None:
        if getattr(backend, "refuse", False):
            raise RuntimeError("the key store is locked")
        saved[(service, user)] = secret

    module = types.ModuleType("keyring")
    module.get_keyring = lambda: backend  # type: ignore[attr-defined]
    module.set_password = set_password  # type: ignore[attr-defined]
    module.get_password = lambda service, user: saved.get((service, user))  # type: ignore[attr-defined]
    module.delete_password = lambda service, user: saved.pop((service, user))  # type: ignore[attr-defined]
    backends = types.ModuleType("keyring.backends")
    fail = types.ModuleType("keyring.backends.fail")
    fail.Keyring = FailKeyring  # type: ignore[attr-defined]
    backends.fail = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", module)
    monkeypatch.setitem(sys.modules, "keyring.backends", backends)
    monkeypatch.setitem(sys.modules, "keyring.backends.fail", fail)
    monkeypatch.delenv("CALLVAULT_AGENT_NO_KEYRING")
    return saved


def enrolment() -> Enrolment:
    return Enrolment(server="https://crm.example", device_id=3, token="cvd_secret")


def test_with_a_working_key_store_the_token_is_not_on_disk(
    monkeypatch: pytest.MonkeyPatch, agent_dirs: Path
) -> None:
    saved = install_keyring(monkeypatch, MemoryKeyring())
    store = Store()
    assert store.save(enrolment()).kept_in == "keyring"
    assert saved == {("callvault-agent", "https://crm.example"): "cvd_secret"}
    assert not store.token_path.exists()
    assert "cvd_secret" not in store.config_path.read_text()
    loaded = store.load()
    assert loaded is not None and loaded.token == "cvd_secret"
    store.forget()
    assert saved == {}


def test_a_refusing_key_store_falls_back_to_the_private_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_keyring(monkeypatch, MemoryKeyring(refuse=True))
    store = Store()
    assert store.save(enrolment()).kept_in == "file"
    assert store.token_path.stat().st_mode & 0o777 == 0o600
    loaded = store.load()
    assert loaded is not None and loaded.token == "cvd_secret"


def test_the_fail_backend_counts_as_no_key_store(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = install_keyring(monkeypatch, FailKeyring())
    assert Store().save(enrolment()).kept_in == "file"
    assert saved == {}


def test_a_missing_token_means_not_enrolled() -> None:
    store = Store()
    store.save(enrolment())
    store.token_path.unlink()
    assert store.load() is None
