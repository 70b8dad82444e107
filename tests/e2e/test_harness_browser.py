"""The browser harness itself: every page's body reaches the leak check, even when the test
moves on to the next page before Playwright has handed the previous response over."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import Browse

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_page_left_at_once_still_has_its_body_read(browse: Callable[..., Browse]) -> None:
    b = browse()
    # Every read now waits first, so each page is left long before its body would be read.
    b.seen.read_delay_ms = 400
    b.goto("/accounts/login/?first")
    b.goto("/accounts/login/?second")  # through Playwright
    b.page.evaluate("location.href = '/accounts/login/?third'")  # by the page's own script
    b.page.wait_for_url("**/accounts/login/?third")
    b.seen.read_delay_ms = 0
    b.goto("/accounts/login/?last")
    b.page.wait_for_timeout(1000)  # every read has ended by then, held up or not

    assert b.seen.errors == []
    pages = [(url, text) for url, _, _, text in b.seen.responses if "/accounts/login/" in url]
    assert [url.rsplit("?", 1)[-1] for url, _ in pages] == ["first", "second", "third", "last"]
    for _, text in pages:
        assert 'name="password"' in text.split("\n\n", 1)[1]
