"""Tests for configuration loading and the enrol command's credential file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from kiosk_fakes import PAIRING_CODE, FakeKioskServer, kiosk_server

from venue_kiosk.__main__ import main
from venue_kiosk.config import KioskConfigError, load_config, load_credential

__all__ = ["kiosk_server"]


def test_environment_overrides_the_toml_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[kiosk]\nble_rssi_threshold = -70\nble_dwell_s = 3\nscanner_serial_port = "/dev/ttyACM0"\n')
    config = load_config(path, {"VENUE_KIOSK_BLE_DWELL_S": "1.5", "VENUE_KIOSK_BLE_ENABLED": "false"})
    assert config.ble_rssi_threshold == -70
    assert config.ble_dwell_s == 1.5 and config.ble_enabled is False
    assert config.scanner_serial_port == "/dev/ttyACM0"
    assert config.heartbeat_interval_s == 60.0


def test_unknown_or_invalid_settings_fail_fast(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text("[kiosk]\nrssi = -70\n")
    with pytest.raises(KioskConfigError, match="unknown settings"):
        load_config(path, {})
    with pytest.raises(KioskConfigError, match="invalid value"):
        load_config(None, {"VENUE_KIOSK_BLE_DWELL_S": "soon"})


def test_enrol_stores_the_credential_readable_by_the_owner_only(
    tmp_path: Path, kiosk_server: FakeKioskServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VENUE_KIOSK_STATE_DIR", str(tmp_path / "state"))
    assert main(["enrol", "--server", kiosk_server.url, "--code", PAIRING_CODE]) == 0
    path = tmp_path / "state" / "credential.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cred = load_credential(path)
    assert (cred.kiosk_id, cred.entrance_name) == (7, "Main door")
    assert cred.rotation_secret == b"secret-secret-secret-secret"
    assert "Enrolled as kiosk 7" in capsys.readouterr().out


def test_enrol_with_a_wrong_code_reports_the_servers_error_and_stores_nothing(
    tmp_path: Path, kiosk_server: FakeKioskServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VENUE_KIOSK_STATE_DIR", str(tmp_path))
    assert main(["enrol", "--server", kiosk_server.url, "--code", "WRONG"]) == 1
    assert "unknown pairing code" in capsys.readouterr().err
    assert not (tmp_path / "credential.json").exists()


def test_run_before_enrolment_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VENUE_KIOSK_STATE_DIR", str(tmp_path))
    assert main(["run"]) == 1
    assert "run `enrol` first" in capsys.readouterr().err
