"""Typed environment readers."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from callvault.lib.dburl import database_from_url
from callvault.lib.envconfig import env_bool, env_int, env_list, env_secret


def test_env_bool_reads_the_usual_spellings_and_refuses_others(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG") is True
    monkeypatch.setenv("X_FLAG", "0")
    assert env_bool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG")


def test_env_int_names_the_variable_on_a_typo(monkeypatch):
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env_int("X_NUM", 1)


def test_env_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("X_LIST", " a, ,b ,")
    assert env_list("X_LIST") == ["a", "b"]


def test_env_secret_prefers_the_file_variant(monkeypatch, tmp_path):
    (tmp_path / "s").write_text("from-file\n")
    monkeypatch.setenv("X_SECRET", "from-env")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "s"))
    assert env_secret("X_SECRET") == "from-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        env_secret("X_SECRET")


def test_database_urls():
    pg = database_from_url(
        "postgres://u:p%40ss@db.example:6432/cv?sslmode=require", conn_max_age=600
    )
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6432",
        "cv",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert pg["CONN_MAX_AGE"] == 600
    assert database_from_url("sqlite:////srv/cv.db", conn_max_age=0)["NAME"] == "/srv/cv.db"
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://x/y", conn_max_age=0)
