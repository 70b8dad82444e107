"""Which model columns hold sealed values, so rotation can find them without importing apps."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


@dataclass(frozen=True)
class SealedColumn:
    """A model's ciphertext column and the field name bound into its associated data."""

    model: type[models.Model]
    column: str
    field: str
    project_attr: str = "project_id"


SEALED_COLUMNS: list[SealedColumn] = []


def register_sealed_column(model: type[models.Model], column: str, field: str) -> None:
    """Called from an app's ready(): rotation and status will include this column."""
    entry = SealedColumn(model, column, field)
    if entry not in SEALED_COLUMNS:
        SEALED_COLUMNS.append(entry)
