"""Obviously fake phone numbers for demo data and tests.

They come from the North American range 555-0100..555-0199 that is reserved for fiction in
every area code, and are written in the different ways people type numbers.
"""

from __future__ import annotations

import random

AREA_CODES = ["202", "212", "305", "312", "415", "617", "702", "718"]
RESERVED_LINES = range(100, 200)  # 555-0100 .. 555-0199

STYLES = [
    "+1 {a} 555 0{l}",
    "+1 ({a}) 555-0{l}",
    "+1-{a}-555-0{l}",
    "+1{a}5550{l}",
    "8 10 1 {a} 555 0{l}",  # the Russian international prefix, as call centers see it
]


def fake_phone_numbers(count: int, rng: random.Random) -> list[str]:
    """`count` distinct reserved numbers (up to 800), each in a random writing style."""
    pool = [(a, line) for a in AREA_CODES for line in RESERVED_LINES]
    if count > len(pool):
        raise ValueError(f"only {len(pool)} reserved numbers exist")
    picks = rng.sample(pool, count)
    return [rng.choice(STYLES).format(a=a, l=line) for a, line in picks]


def fake_phone(rng: random.Random | None = None, *, style: int = 0) -> tuple[str, str]:
    """One reserved number: (as typed in the given style, E.164)."""
    rng = rng or random.Random()
    a, line = rng.choice(AREA_CODES), rng.choice(list(RESERVED_LINES))
    return STYLES[style].format(a=a, l=line), f"+1{a}5550{line}"
