"""The error actions raise for bad input: every problem named by its field."""

from __future__ import annotations


class FieldErrors(ValueError):
    """One or more fields are wrong; `errors` maps each field to a message for a person."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors

    @classmethod
    def one(cls, field: str, message: str) -> FieldErrors:
        """An error about a single field."""
        return cls({field: message})
