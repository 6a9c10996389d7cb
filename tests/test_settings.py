from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from slaboard.settings import BASE_DIR, database_from_url, database_pool, env_bool


def test_a_postgres_url_becomes_a_postgres_database() -> None:
    db = database_from_url("postgres://sla:s%40cret@db.internal:6543/board?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "board",
        "sla",
        "s@cret",
        "db.internal",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert db["CONN_MAX_AGE"] == 0


def test_a_postgres_database_gets_a_bounded_pool_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_POOL_MIN", "2")
    monkeypatch.setenv("DB_POOL_MAX", "8")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "3")
    db = database_from_url("postgres://sla@db/board", pool=database_pool())
    assert db["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 3.0}
    assert db["CONN_MAX_AGE"] == 0  # Django refuses persistent connections with a pool
    assert db["CONN_HEALTH_CHECKS"] is True  # a connection broken by a restart is replaced


def test_db_pool_max_zero_turns_the_pool_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_MAX", "0")
    db = database_from_url("postgres://sla@db/board", pool=database_pool())
    assert "pool" not in db["OPTIONS"] and db["CONN_HEALTH_CHECKS"] is False


def test_a_relative_sqlite_url_lives_in_the_project() -> None:
    db = database_from_url("sqlite:///var/slaboard.sqlite3")
    assert db["NAME"] == str(BASE_DIR / "var" / "slaboard.sqlite3")
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    assert db["OPTIONS"]["timeout"] > 0


def test_an_absolute_sqlite_url_is_kept() -> None:
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


def test_an_unknown_database_scheme_is_named() -> None:
    with pytest.raises(ImproperlyConfigured, match="'mysql' is not supported"):
        database_from_url("mysql://localhost/db")


def test_a_bad_boolean_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", True)


def _django_process(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    full_env.update(env)
    full_env["DJANGO_SETTINGS_MODULE"] = "slaboard.settings"
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_with_the_development_secret_key() -> None:
    result = _django_process({"DEBUG": "0"}, "print('started')")
    assert result.returncode != 0
    assert "SECRET_KEY is the development default" in result.stderr


def test_production_starts_with_a_real_secret_key() -> None:
    result = _django_process({"DEBUG": "0", "SECRET_KEY": "x" * 50}, "print('started')")
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.subprocess
def test_the_embedded_sqlite_database_runs_in_wal_mode(tmp_path: Path) -> None:
    result = _django_process(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"},
        "from django.db import connection; c = connection.cursor(); "
        "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wal"
