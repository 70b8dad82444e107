"""The schema goes back as well as forward: the login-security and leak-control migrations
are reversible on the embedded default (SQLite refuses to drop a column its triggers name,
so the reverse steps must take the audit triggers off first), and forward again after."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import run


def test_the_security_and_guard_migrations_go_back_and_forward_again(tmp_path: Path) -> None:
    for args in (
        ["migrate"],
        ["manage", "migrate", "guard", "zero"],
        ["manage", "migrate", "accounts", "0004"],
        ["migrate"],
    ):
        result = run(args, tmp_path)
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    check = run(["manage", "makemigrations", "--check", "--dry-run"], tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
