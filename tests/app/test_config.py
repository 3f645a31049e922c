"""Configuration: precedence, fail-fast on bad or missing values, one-line messages at start-up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_config
from tests.conftest import TEST_KEYS

CHECKIN = str(Path(sys.executable).with_name("checkin"))


def test_production_without_secret_key_names_what_is_missing() -> None:
    environ = {"APP_ENV": "production", "DATABASE_URL": "postgresql+psycopg://x/y"}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(environ)


def test_production_without_database_url_names_it() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as info:
        load_config({"APP_ENV": "production", **TEST_KEYS})
    assert "SECRET_KEY" not in str(info.value)


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_ENV='staging' is not valid"):
        load_config({"APP_ENV": "staging"})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("RETENTION_DAYS", "three weeks"),
        ("QUIET_HOURS_START", "25:00"),
        ("DEFAULT_TIMEZONE", "Mars/Olympus"),
        ("SMS_CHANNEL", "carrier-pigeon"),
        ("RETENTION_DAYS", "0"),
    ],
)
def test_bad_setting_values_are_refused_with_the_variable_name(name: str, raw: str) -> None:
    environ = {"APP_ENV": "testing", "DATABASE_URL": "sqlite://", **TEST_KEYS, name: raw}
    with pytest.raises(ConfigError, match=name):
        load_config(environ)


def test_environment_overrides_defaults_and_overrides_win() -> None:
    environ = {"APP_ENV": "testing", "DATABASE_URL": "sqlite://", **TEST_KEYS, "RETENTION_DAYS": "14"}
    assert load_config(environ)["RETENTION_DAYS"] == 14
    assert load_config(environ, overrides={"RETENTION_DAYS": 7})["RETENTION_DAYS"] == 7
    assert load_config({**environ, "RETENTION_DAYS": ""})["RETENTION_DAYS"] == 21


def test_development_generates_keys_once_and_keeps_them(tmp_path: Path) -> None:
    first = load_config({"APP_ENV": "development"}, instance_path=str(tmp_path))
    second = load_config({"APP_ENV": "development"}, instance_path=str(tmp_path))
    assert first["SECRET_KEY"] and first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["DATA_ENCRYPTION_KEYS"] == second["DATA_ENCRYPTION_KEYS"]
    assert first["DATABASE_URL"].startswith("sqlite:///") and str(tmp_path) in first["DATABASE_URL"]
    assert oct((tmp_path / "dev-secrets.env").stat().st_mode & 0o777) == "0o600"


def _run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"APP_ENV", "DATABASE_URL", *TEST_KEYS}}
    return subprocess.run(
        [CHECKIN, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_start_without_secrets_in_production_prints_one_line() -> None:
    result = _run_cli("check-config", APP_ENV="production")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "must be set when APP_ENV=production" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_with_unreachable_database_prints_one_line() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _run_cli(
        "check-config",
        APP_ENV="production",
        DATABASE_URL=f"postgresql+psycopg://nobody:pw@127.0.0.1:{port}/none?connect_timeout=3",
        **TEST_KEYS,
    )
    assert result.returncode != 0
    assert "database unreachable" in result.stderr
    assert "pw@" not in result.stderr  # the password is never printed
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_with_bad_setting_value_prints_one_line() -> None:
    result = _run_cli("check-config", APP_ENV="testing", DATABASE_URL="sqlite://", RETENTION_DAYS="soon", **TEST_KEYS)
    assert result.returncode == 2
    assert "RETENTION_DAYS='soon' is not valid" in result.stderr
    assert "Traceback" not in result.stderr
