"""Logging in in a real browser: wrong passwords, then the lockout page with its wait."""

from __future__ import annotations

from typing import Any

import pytest

from callvault.accounts.models import Membership
from conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def submit(b: Any, username: str, password: str) -> None:
    b.page.fill("input[name=username]", username)
    b.page.fill("input[name=password]", password)
    with b.page.expect_navigation():
        b.page.click("form[action$='/accounts/login/'] button[type=submit]")


def test_five_wrong_passwords_show_the_wait_and_refuse_the_right_one(
    browse: Any, operator: Membership
) -> None:
    b = browse()
    b.goto("/accounts/login/")
    for _ in range(4):
        submit(b, "bob", "not the password 1")
        assert "Wrong username or password." in b.page.inner_text("main")
    submit(b, "bob", "not the password 1")
    assert "Too many failed attempts. Try again in 5 minutes." in b.page.inner_text("main")
    submit(b, "bob", PASSWORD)
    assert "/accounts/login/" in b.page.url
    assert "Too many failed attempts." in b.page.inner_text("main")
    assert not b.seen.errors
