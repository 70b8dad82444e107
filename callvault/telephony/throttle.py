"""Counting requests per fixed window in the cache: the inbound lookups of a PBX, the
refused PBX requests from an address."""

from __future__ import annotations

import time

from django.core.cache import cache


def now() -> float:
    """The moment the windows are cut at (one clock for every caller, and for tests)."""
    return time.time()


def window_key(key: str, window: int, at: float | None = None) -> str:
    """The cache key of `key`'s counter in the fixed window of `window` seconds at `at`
    (default: now)."""
    return f"{key}:{int((now() if at is None else at) // window)}"


def count(key: str, window: int, at: float | None = None, *, keep: int = 0) -> int:
    """Count one for `key` in the current fixed window; the window's count so far. The
    counter is kept two windows, or `keep` seconds if longer (to be read afterwards).

    The window's start is part of the cache key: Django's database cache re-saves a key on
    `incr` with the default timeout, so a counter kept under one key would never expire
    while requests keep coming."""
    windowed = window_key(key, window, at)
    timeout = max(window * 2, keep)
    if cache.add(windowed, 1, timeout):
        return 1
    try:
        counted = int(cache.incr(windowed))
    except ValueError:  # expired in between
        cache.set(windowed, 1, timeout)
        return 1
    if keep:
        cache.touch(windowed, timeout)  # incr may have shortened it to the default
    return counted
