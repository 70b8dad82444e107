"""Passwords chosen by the system for people (shown once, changed at first login)."""

from __future__ import annotations

import secrets


def generated_password() -> str:
    """A strong password a person can still type: four groups, about 140 bits."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(4))
