"""`callvault vault`: create, inspect and rotate the key ring."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from callvault.audit.context import system_run
from callvault.audit.recorder import record_event
from callvault.vault.keyring import (
    create_keyring_file,
    get_keyring,
    reset_keyring_cache,
    write_keyring_file,
)
from callvault.vault.registry import SEALED_COLUMNS
from callvault.vault.rotation import key_usage, reseal_column


def _record_ring(action: str, key: str, keys: Iterable[str]) -> None:
    """A change of the key ring, by key ids (not secret: every ciphertext names its key)."""
    record_event(
        action,
        project_id=None,
        object_type="keyring",
        object_id=key,
        extra={"keys": sorted(keys)},
    )


class Command(BaseCommand):
    """Key ring management."""

    help = "The vault's key ring: init, status, rotate, retire KEY."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("init", help="create a new key ring file (refuses to overwrite)")
        sub.add_parser("status", help="keys in the ring and how many values each seals")
        rotate = sub.add_parser("rotate", help="add a new active key and re-seal everything")
        rotate.add_argument(
            "--resume",
            action="store_true",
            help="do not add a key; re-seal what is not under the active one",
        )
        rotate.add_argument("--batch", type=int, default=500)
        retire = sub.add_parser("retire", help="remove a key that no value uses any more")
        retire.add_argument("key")

    def handle(self, *args: Any, **opts: Any) -> None:
        # Recorded as "system: vault rotate" etc., the run's events under one request id.
        with system_run(f"vault {opts['action']}"):
            getattr(self, f"do_{opts['action']}")(**opts)

    def _file(self) -> Path:
        if settings.VAULT_KEYRING:
            raise CommandError(
                "the key ring comes from CALLVAULT_KEYRING: change it there and restart every "
                "process, then run `callvault vault rotate --resume`"
            )
        return Path(settings.VAULT_KEYRING_FILE)

    def do_init(self, **opts: Any) -> None:
        path = self._file()
        try:
            create_keyring_file(path)
        except FileExistsError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.WARNING(
                f"Key ring created at {path} (mode 0600). BACK IT UP NOW: without it the sealed "
                "phone numbers cannot be read."
            )
        )

    def do_status(self, **opts: Any) -> None:
        ring = get_keyring()
        self.stdout.write(
            f"active key: {ring.active}; keys in ring: {', '.join(sorted(ring.seal_keys))}"
        )
        for column, counts in key_usage().items():
            shown = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "empty"
            self.stdout.write(f"{column}: {shown}")

    def do_rotate(self, *, resume: bool, batch: int, **opts: Any) -> None:
        if not resume:
            path = self._file()
            ring = get_keyring().with_new_key()
            write_keyring_file(path, ring)
            reset_keyring_cache()
            _record_ring("vault.key_add", ring.active, ring.seal_keys)
            self.stdout.write(
                self.style.WARNING(
                    f"New active key {ring.active} written to {path}. Back the file up. Running "
                    "processes pick it up when they meet a value sealed under it."
                )
            )
        total = 0
        for col in SEALED_COLUMNS:
            total += reseal_column(col, batch=batch, progress=self.stdout.write)
        self.stdout.write(
            self.style.SUCCESS(f"re-sealed {total} values under {get_keyring().active}")
        )

    def do_retire(self, *, key: str, **opts: Any) -> None:
        path = self._file()
        in_use = {col: n for col, counts in key_usage().items() if (n := counts.get(key, 0))}
        if in_use:
            raise CommandError(
                f"key {key} still seals {in_use}; run `callvault vault rotate --resume` first"
            )
        ring = get_keyring()
        if key not in ring.seal_keys:
            raise CommandError(f"no key {key} in the ring")
        try:
            remaining = ring.without_key(key)
            write_keyring_file(path, remaining)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        reset_keyring_cache()
        _record_ring("vault.key_retire", key, remaining.seal_keys)
        self.stdout.write(self.style.SUCCESS(f"key {key} retired"))
