"""The `callvault` command, run as a real process against a throw-away data folder."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from callvault.cli import COMMANDS


def run(args: list[str], data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    clean.update({"CALLVAULT_DATA_DIR": str(data), "CALLVAULT_DEBUG": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "callvault.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_every_command_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "callvault.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_an_unknown_command_fails_with_the_list(tmp_path):
    result = run(["frobnicate"], tmp_path)
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr


def test_demo_seeds_once_and_prints_logins_and_a_key(tmp_path):
    first = run(["demo", "--no-serve", "--orders", "40"], tmp_path)
    assert first.returncode == 0, first.stderr
    for login in ("owner", "supervisor", "operator1", "operator2", "operator3", "trainee"):
        assert login in first.stdout
    assert "cvk_" in first.stdout
    assert "BACK IT UP" in first.stderr.upper() or "Back it up" in first.stderr
    again = run(["demo", "--no-serve"], tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("cvk_") == 1
    status = run(["vault", "status"], tmp_path)
    assert "orders.Order.phone_sealed: k1: 40" in status.stdout


def test_createowner_makes_a_project_and_shows_the_password_once(tmp_path):
    assert run(["migrate"], tmp_path).returncode == 0
    result = run(
        ["createowner", "--username", "olga", "--project", "Tea shop", "--slug", "tea"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "password (shown once)" in result.stdout
    again = run(["createowner", "--username", "olga", "--project", "X", "--slug", "x"], tmp_path)
    assert again.returncode != 0
    assert "username" in again.stderr


def test_check_passes_on_a_migrated_database(tmp_path):
    assert run(["migrate"], tmp_path).returncode == 0
    result = run(["check"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.http
def test_serve_answers_over_http(tmp_path):
    assert run(["migrate"], tmp_path).returncode == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "DJANGO_"))}
    env.update({"CALLVAULT_DATA_DIR": str(tmp_path), "CALLVAULT_DEBUG": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "callvault.cli", "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as r:
            assert r.status == 200
            assert r.headers["X-Request-ID"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=5) as r:
            assert b"/api/v1/leads" in r.read()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    prod = {
        "CALLVAULT_DEBUG": "0",
        "CALLVAULT_SECRET_KEY": secrets.token_urlsafe(50),
        "CALLVAULT_ALLOWED_HOSTS": "crm.example.com",
    }
    assert run(["vault", "init"], tmp_path, **prod).returncode == 0
    assert run(["migrate"], tmp_path, **prod).returncode == 0
    result = run(["check", "--deploy"], tmp_path, **prod)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout
