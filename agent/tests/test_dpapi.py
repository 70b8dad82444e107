"""The token on Windows: under %LOCALAPPDATA% (a roaming profile does not copy it to other PCs)
and encrypted with DPAPI. DPAPI at its boundary: our ctypes calls against a fake crypt32 and
kernel32 that check the call shapes (DATA_BLOBs, flags, entropy, LocalFree of the output) the
way the real DLLs use them. Written to the Win32 documentation; not run on real Windows."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import pytest

from callvault_agent.config import Enrolment, Store, config_dir, state_dir
from callvault_agent.dpapi import (
    BLOB_P,
    BOOL,
    CRYPTPROTECT_UI_FORBIDDEN,
    DATA_BLOB,
    DWORD,
    ENTROPY,
    Dpapi,
    DpapiError,
)
from test_windows import FakeDLL, target

TOKEN = "cvd_windows_token"


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


class FakeCrypt:
    """crypt32's two calls and kernel32's LocalFree; 'encryption' is a keyed XOR."""

    def __init__(self) -> None:
        self.fail = False
        self.allocated: dict[int, Any] = {}
        self.freed: list[int] = []

        def check(data_in: Any, entropy: Any, reserved: Any, prompt: Any, flags: int) -> bytes:
            assert isinstance(target(data_in), DATA_BLOB)
            assert ctypes.string_at(target(entropy).pbData, target(entropy).cbData) == ENTROPY
            assert reserved is None and prompt is None
            assert flags == CRYPTPROTECT_UI_FORBIDDEN  # never a prompt: nobody may be there
            blob = target(data_in)
            return ctypes.string_at(blob.pbData, blob.cbData)

        def protect(*args: Any) -> int:
            data_in, description, entropy, reserved, prompt, flags, data_out = args
            assert isinstance(description, str) and description
            plain = check(data_in, entropy, reserved, prompt, flags)
            return 0 if self.fail else self.output(data_out, b"DPAPI" + _xor(plain, ENTROPY))

        def unprotect(*args: Any) -> int:
            data_in, description, entropy, reserved, prompt, flags, data_out = args
            assert description is None  # the description is not wanted back
            sealed = check(data_in, entropy, reserved, prompt, flags)
            if self.fail or not sealed.startswith(b"DPAPI"):
                return 0
            return self.output(data_out, _xor(sealed[5:], ENTROPY))

        def local_free(pointer: Any) -> None:
            address = pointer.value
            assert address in self.allocated, "LocalFree of memory DPAPI did not hand out"
            self.freed.append(address)

        self.crypt32 = FakeDLL(CryptProtectData=protect, CryptUnprotectData=unprotect)
        self.kernel32 = FakeDLL(LocalFree=local_free)

    def output(self, data_out: Any, content: bytes) -> int:
        """Hand out memory as DPAPI does (LocalAlloc), for the caller to LocalFree."""
        buffer = ctypes.create_string_buffer(content, len(content))
        self.allocated[ctypes.addressof(buffer)] = buffer
        target(data_out).cbData = len(content)
        target(data_out).pbData = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte))
        return 1

    def dpapi(self) -> Dpapi:
        return Dpapi(self.crypt32, self.kernel32)


@pytest.fixture
def fake() -> FakeCrypt:
    return FakeCrypt()


def test_signatures_follow_wincrypt_h(fake: FakeCrypt) -> None:
    fake.dpapi()
    functions = fake.crypt32.functions
    shape = [BLOB_P, ctypes.c_wchar_p, BLOB_P, ctypes.c_void_p, ctypes.c_void_p, DWORD, BLOB_P]
    assert functions["CryptProtectData"].argtypes == shape
    unshape = [BLOB_P, ctypes.POINTER(ctypes.c_wchar_p), *shape[2:]]
    assert functions["CryptUnprotectData"].argtypes == unshape
    assert functions["CryptProtectData"].restype is BOOL
    assert ctypes.sizeof(DWORD) == 4
    assert fake.kernel32.functions["LocalFree"].argtypes == [ctypes.c_void_p]


def test_protect_and_unprotect_free_what_dpapi_allocated(fake: FakeCrypt) -> None:
    dpapi = fake.dpapi()
    sealed = dpapi.protect(TOKEN.encode())
    assert TOKEN.encode() not in sealed
    assert dpapi.unprotect(sealed) == TOKEN.encode()
    assert sorted(fake.freed) == sorted(fake.allocated)  # both outputs freed, once


def test_a_failing_call_raises(fake: FakeCrypt) -> None:
    fake.fail = True
    with pytest.raises(DpapiError, match="CryptProtectData failed"):
        fake.dpapi().protect(b"x")


def windows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    monkeypatch.delenv("CALLVAULT_AGENT_CONFIG_DIR")
    monkeypatch.delenv("CALLVAULT_AGENT_STATE_DIR")
    roaming, local = tmp_path / "Roaming", tmp_path / "Local"
    monkeypatch.setenv("APPDATA", str(roaming))
    monkeypatch.setenv("LOCALAPPDATA", str(local))
    return roaming, local


def test_on_windows_config_and_state_are_local_not_roaming(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _roaming, local = windows_env(monkeypatch, tmp_path)
    assert config_dir("win32") == local / "callvault-agent"
    assert state_dir("win32") == local / "callvault-agent"


def test_on_windows_the_token_is_sealed_with_dpapi(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeCrypt
) -> None:
    windows_env(monkeypatch, tmp_path)
    store = Store(platform="win32", dpapi=fake.dpapi())
    enrolment = store.save(Enrolment(server="https://crm.example", device_id=4, token=TOKEN))
    assert enrolment.kept_in == "dpapi"
    assert not store.token_path.exists()
    assert TOKEN.encode() not in store.sealed_token_path.read_bytes()
    assert json.loads(store.config_path.read_text())["kept_in"] == "dpapi"
    loaded = Store(platform="win32", dpapi=fake.dpapi()).load()
    assert loaded is not None and loaded.token == TOKEN
    assert str(store.sealed_token_path) in Store(platform="win32", dpapi=fake.dpapi()).forget()
    assert not store.sealed_token_path.exists()


def test_when_dpapi_fails_the_token_goes_to_the_private_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeCrypt
) -> None:
    windows_env(monkeypatch, tmp_path)
    fake.fail = True
    store = Store(platform="win32", dpapi=fake.dpapi())
    assert store.save(Enrolment("https://crm.example", 4, TOKEN)).kept_in == "file"
    assert store.token_path.read_text().strip() == TOKEN


def test_an_enrolment_of_the_roaming_profile_moves_here_and_leaves_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeCrypt
) -> None:
    roaming, local = windows_env(monkeypatch, tmp_path)
    old = roaming / "callvault-agent"  # where agent 0.1.0 kept them
    old.mkdir(parents=True)
    (old / "config.json").write_text(
        json.dumps({"server": "https://crm.example", "device_id": 4, "kept_in": "file"})
    )
    (old / "token").write_text(TOKEN + "\n")
    loaded = Store(platform="win32", dpapi=fake.dpapi()).load()
    assert loaded is not None and (loaded.token, loaded.device_id) == (TOKEN, 4)
    assert loaded.kept_in == "dpapi"
    assert sorted(p.name for p in old.iterdir()) == []  # nothing left to roam
    assert (local / "callvault-agent" / "token.dpapi").exists()


def test_forget_also_removes_what_0_1_0_left_in_the_roaming_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeCrypt
) -> None:
    roaming, _local = windows_env(monkeypatch, tmp_path)
    old = roaming / "callvault-agent"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    (old / "token").write_text(TOKEN)
    removed = Store(platform="win32", dpapi=fake.dpapi()).forget()
    assert str(old / "token") in removed and list(old.iterdir()) == []
