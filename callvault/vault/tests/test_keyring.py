"""The key ring: its file, its format, and refusing to run without one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from callvault.vault.keyring import KeyRing, create_keyring_file


def test_a_new_key_ring_file_is_private(tmp_path):
    path = tmp_path / "ring.json"
    create_keyring_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_it_refuses_to_overwrite_a_key_ring(tmp_path):
    path = tmp_path / "ring.json"
    create_keyring_file(path)
    with pytest.raises(FileExistsError):
        create_keyring_file(path)


def test_the_ring_survives_a_round_trip_through_json():
    ring = KeyRing.generate().with_new_key()
    again = KeyRing.from_json(ring.to_json())
    assert again.active == "k2"
    assert again.seal_keys == ring.seal_keys
    assert again.index_key == ring.index_key


def test_a_damaged_ring_is_an_error_not_a_new_ring():
    with pytest.raises(ImproperlyConfigured):
        KeyRing.from_json('{"active": "k1"}')
    with pytest.raises(ImproperlyConfigured):
        KeyRing.from_json("not json")


def test_the_active_key_cannot_be_retired():
    ring = KeyRing.generate().with_new_key()
    assert set(ring.without_key("k1").seal_keys) == {"k2"}
    with pytest.raises(ValueError, match="active"):
        ring.without_key("k2")


def test_repr_never_shows_key_material():
    ring = KeyRing.generate()
    assert ring.seal_keys["k1"].hex() not in repr(ring)
    assert "k1" in repr(ring)


def run_check(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    clean.update(
        {"CALLVAULT_DATA_DIR": str(tmp), "DJANGO_SETTINGS_MODULE": "callvault.settings", **env}
    )
    return subprocess.run(
        [sys.executable, "-m", "callvault.cli", "check"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_outside_debug_it_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_check({}, tmp_path)
    assert result.returncode != 0
    assert "CALLVAULT_SECRET_KEY" in result.stderr


def test_outside_debug_it_refuses_to_start_without_a_key_ring(tmp_path):
    result = run_check({"CALLVAULT_SECRET_KEY": "s" * 50}, tmp_path)
    assert result.returncode != 0
    assert "callvault vault init" in result.stderr
    assert not (tmp_path / "keyring.json").exists()


def test_with_a_key_ring_file_it_starts(tmp_path):
    create_keyring_file(tmp_path / "ring.json")
    result = run_check(
        {
            "CALLVAULT_SECRET_KEY": "s" * 50,
            "CALLVAULT_KEYRING_FILE": str(tmp_path / "ring.json"),
            "CALLVAULT_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        },
        tmp_path,
    )
    # The database is empty, so the migration check fails: but the key ring was accepted.
    assert "key ring: 1 key(s), active k1" in result.stdout, result.stderr
