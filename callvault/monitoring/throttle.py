"""Counters in fixed time windows, kept in the cache: the agent's request rates, its
screenshot bytes, wrong enrolment codes, and how often a refusal is recorded.

The window's start is part of every key: Django's database cache re-saves a key on `incr`
with the default timeout, so a counter kept under one key would never expire while the
agent keeps sending, and would lock it out for good."""

from __future__ import annotations

import contextlib
import time

from django.core.cache import cache


def window_key(key: str, window: int, now: float | None = None) -> str:
    """The cache key of `key`'s counter in the fixed window of `window` seconds now."""
    return f"{key}:{int((time.time() if now is None else now) // window)}"


def count(key: str, window: int, amount: int = 1, now: float | None = None) -> int:
    """Add `amount` to `key`'s counter in the current window; the new total."""
    windowed = window_key(key, window, now)
    if cache.add(windowed, amount, window * 2):
        return amount
    try:
        return int(cache.incr(windowed, amount))
    except ValueError:  # expired in between
        cache.set(windowed, amount, window * 2)
        return amount


def counted(key: str, window: int, now: float | None = None) -> int:
    """`key`'s counter in the current window, without adding to it."""
    return int(cache.get(window_key(key, window, now)) or 0)


def over_limit(key: str, limit: int, window: int, now: float | None = None) -> bool:
    """Count one for `key` in the current window; True once the count passes `limit`."""
    return count(key, window, 1, now) > limit


def first_in_window(key: str, window: int, now: float | None = None) -> bool:
    """True for the first call with `key` in the current window, False after it."""
    return bool(cache.add(window_key(key, window, now), 1, window * 2))


def tally(key: str, amount: int, timeout: int) -> None:
    """Add to a plain counter (no window) that lives `timeout` seconds after its last add."""
    if not cache.add(key, amount, timeout):
        try:
            cache.incr(key, amount)
        except ValueError:  # expired in between
            cache.set(key, amount, timeout)


def take(key: str) -> int:
    """A plain counter's value, taken away: what is counted meanwhile stays for later."""
    value = int(cache.get(key) or 0)
    if value:
        with contextlib.suppress(ValueError):  # expired in between
            cache.decr(key, value)
    return value
