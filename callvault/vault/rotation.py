"""Re-sealing every stored value under the active key, in batches, while the system runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.db import transaction

from callvault.audit.recorder import record_event
from callvault.vault.keyring import get_keyring
from callvault.vault.phones import FORMAT, key_id_of, open_phone, seal
from callvault.vault.registry import SEALED_COLUMNS, SealedColumn


def key_usage() -> dict[str, Counter[str]]:
    """For each sealed column, how many values each key id holds."""
    usage: dict[str, Counter[str]] = {}
    for col in SEALED_COLUMNS:
        counts: Counter[str] = Counter()
        values = col.model._default_manager.exclude(**{col.column: ""}).values_list(
            col.column, flat=True
        )
        for value in values.iterator(chunk_size=2000):
            counts[key_id_of(value)] += 1
        usage[f"{col.model._meta.label}.{col.column}"] = counts
    return usage


def _stale(col: SealedColumn, active: str, after_pk: int, batch: int) -> list[tuple[int, int, str]]:
    manager = col.model._default_manager
    return list(
        manager.exclude(**{col.column: ""})
        .exclude(**{f"{col.column}__startswith": f"{FORMAT}:{active}:"})
        .filter(pk__gt=after_pk)
        .order_by("pk")
        .values_list("pk", col.project_attr, col.column)[:batch]
    )


def reseal_column(
    col: SealedColumn, *, batch: int = 500, progress: Callable[[str], None] = lambda s: None
) -> int:
    """Re-seal one column's values not under the active key; returns how many were re-sealed.

    Each batch is its own short transaction, and each row is written only if it still holds
    the ciphertext that was read (an edit in between wins; a later pass picks it up if needed),
    so operators keep working while this runs. Plaintext never changes, so no order history
    entry is written: one "vault.rotate" event per batch records what was done, naming the
    rows it rewrote (a ciphertext that changed without such an event was not a rotation).
    Events of one run share its request id (`system_run` in the command).
    """
    ring = get_keyring()
    label = f"{col.model._meta.label}.{col.column}"
    done, after = 0, 0
    while rows := _stale(col, ring.active, after, batch):
        resealed: list[int] = []
        with transaction.atomic():
            for pk, project_id, old in rows:
                plain = open_phone(old, project_id=project_id, field=col.field)
                new = seal(plain, project_id=project_id, field=col.field, ring=ring)
                if col.model._default_manager.filter(pk=pk, **{col.column: old}).update(
                    **{col.column: new}
                ):
                    resealed.append(pk)
            changed = len(resealed)
            record_event(
                "vault.rotate",
                project_id=None,
                object_type="sealed_column",
                object_id=label,
                extra={
                    "key": ring.active,
                    "resealed": changed,
                    "first_pk": rows[0][0],
                    "last_pk": rows[-1][0],
                    "ids": resealed,
                },
            )
        done += changed
        after = rows[-1][0]
        progress(f"{label}: {done} re-sealed under {ring.active}")
    return done
