"""The phone-shaped pattern (vault/logfilter.py): the separators people really put between
digits (slashes, underscores, typographic dashes, non-breaking spaces, dots) are blanked,
while dates, times, money and order numbers stay readable. The same pattern runs inside
PostgreSQL for changes made outside the application (audit/bypass.py): on PostgreSQL every
case is checked there too, through the installed function."""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection

from callvault.lib.fakephones import fake_phone
from callvault.vault.logfilter import PHONE_LIKE, redact

NBSP, NNBSP, EN, EM, MINUS = "\u00a0", "\u202f", "\u2013", "\u2014", "\u2212"

# Text that must stay as it is: no run of seven digits that is not a date.
KEPT = [
    "2026-11-29",
    "2026-11-29 14:02",
    "2026-11-29T14:02:33Z",
    "29.11.2026",
    "29.11.2026 14:02:33 Petrov",
    "11/29/2026",
    "2026/11/29",
    "report_2026_11_29.xlsx",
    f"29.11.2026{EN}30.11.2026",
    f"29.11.2026 14:00 {EN} 30.11.2026 15:00",
    "14:02",
    f"14:02{EN}15:30",
    "1 990,00 RUB",
    f"1{NBSP}990,00",
    f"12{NNBSP}345,50",
    "990.00",
    "Order 104233",
    "Order #104233, 29.11.2026",
    "Card 1042 of 3",
    "version 2.10.1",
    "1920x1080",
    "page 12/40",
]


def national(e164: str) -> str:
    """The ten digits after +1 of a reserved number."""
    return e164[2:]


def written(e164: str) -> list[str]:
    """The reserved number as the review found numbers written in window titles."""
    d = national(e164)
    area, exchange, line = d[:3], d[3:6], d[6:]
    return [
        f"{area}/{exchange}/{line}",
        f"{area}_{exchange}_{line}",
        f"1{EN}{area}{EN}{exchange}{EN}{line[:2]}{EN}{line[2:]}",
        f"1{EM}{area}{EM}{exchange}{EM}{line}",
        f"+1{NBSP}{area}{NBSP}{exchange}{NBSP}{line}",
        f"{area}{NNBSP}{exchange}{NNBSP}{line}",
        f"{area}.{exchange}.{line}",
        f"+1 ({area}) {exchange}-{line}",
        f"1 {area} {exchange}{MINUS}{line}",
        d,
    ]


@pytest.fixture
def number() -> str:
    """The E.164 form of a reserved-range number drawn at test time."""
    return fake_phone(random.Random())[1]


def shown_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_numbers_with_any_separator_are_blanked(number):
    for form in written(number):
        for text in (form, f"Call {form} - Softphone", f"clients_{form}.xlsx"):
            cleaned = redact(text)
            assert "[redacted]" in cleaned, text
            assert national(number)[-7:] not in shown_digits(cleaned), (text, cleaned)


def test_a_date_in_front_does_not_hide_a_number(number):
    for form in written(number):
        for text in (f"2026-11-29 {form}", f"29.11.2026 14:02 {form}", f"{form} 2026-11-29"):
            cleaned = redact(text)
            assert national(number)[-7:] not in shown_digits(cleaned), (text, cleaned)


def test_dates_times_money_and_order_numbers_stay():
    for text in KEPT:
        assert redact(text) == text, text
    assert redact("Order 1042367") == "Order [redacted]"  # seven digits: phone-shaped


def test_the_pattern_is_the_same_inside_postgresql(db, number):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite's changes are redacted in Python")
    texts = [*KEPT]
    for form in written(number):
        texts += [form, f"Call {form} - Softphone", f"2026-11-29 {form}"]
    with connection.cursor() as cursor:
        for text in texts:
            # The function the bypass triggers use, and the bare pattern (the function also
            # leaves a value that is wholly a date alone).
            cursor.execute(
                "SELECT callvault_audit_redact(to_jsonb(%s::text)) #>> '{}', "
                "regexp_replace(%s, %s, '[redacted]', 'g')",
                [text, text, PHONE_LIKE.pattern],
            )
            in_function, bare = cursor.fetchone()
            assert in_function == bare == redact(text), text
