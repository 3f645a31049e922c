"""Kiosk settings from a TOML file and VENUE_KIOSK_* environment variables, and the stored credential."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class KioskConfigError(Exception):
    """The configuration or the stored credential is missing or invalid."""


@dataclass(frozen=True, slots=True)
class KioskConfig:
    server_url: str = ""
    state_dir: Path = Path("/var/lib/venue-kiosk")
    screen_host: str = "127.0.0.1"
    screen_port: int = 8765
    # BLE: a phone counts as "at the door" only this close and for this long.
    ble_enabled: bool = True
    ble_rssi_threshold: int = -65
    ble_dwell_s: float = 2.0
    ble_dedupe_s: float = 1800.0
    ble_watchdog_s: float = 30.0
    ble_start_attempts: int = 3
    # Spec for the bumble backend (e.g. "usb:0"); empty means the platform's own bleak backend.
    ble_bumble_transport: str = ""
    scanner_serial_port: str = ""
    scanner_serial_baud: int = 9600
    scanner_stdin: bool = False
    scan_window_steps: int = 1
    sync_interval_s: float = 5.0
    sync_batch_size: int = 500
    sync_timeout_s: float = 10.0
    backoff_max_s: float = 300.0
    heartbeat_interval_s: float = 60.0
    clock_skew_threshold_s: float = 5.0
    kiosk_step_s: int = 10

    @property
    def credential_path(self) -> Path:
        return self.state_dir / "credential.json"

    @property
    def queue_path(self) -> Path:
        return self.state_dir / "queue.sqlite3"


_FIELDS = {f.name: f for f in dataclasses.fields(KioskConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            return Path(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise KioskConfigError(f"invalid value for {name}: {value!r}") from exc


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> KioskConfig:
    """Defaults, then the TOML file's [kiosk] table, then VENUE_KIOSK_<FIELD> variables."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh).get("kiosk", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise KioskConfigError(f"cannot read {path}: {exc}") from exc
        unknown = set(table) - set(_FIELDS)
        if unknown:
            raise KioskConfigError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v) for k, v in table.items()})
    env = os.environ if environ is None else environ
    for name in _FIELDS:
        raw = env.get(f"VENUE_KIOSK_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    return KioskConfig(**values)


@dataclass(frozen=True, slots=True)
class Credential:
    """What enrolment returned; the bearer credential and rotation secret are secrets."""

    server_url: str
    kiosk_id: int
    credential: str
    rotation_secret: bytes = field(repr=False)
    venue_name: str
    entrance_name: str
    checkin_base_url: str


def save_credential(path: Path, cred: Credential) -> None:
    """Write atomically with 0600 permissions, so no reader ever sees a partial or open file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(cred)
    data["rotation_secret"] = base64.urlsafe_b64encode(cred.rotation_secret).decode("ascii")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by umask and ignored for an existing file
        os.replace(tmp, path)
    except OSError as exc:
        raise KioskConfigError(f"cannot store credential in {path}: {exc}") from exc


def load_credential(path: Path) -> Credential:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["rotation_secret"] = decode_secret(data["rotation_secret"])
        return Credential(**data)
    except FileNotFoundError as exc:
        raise KioskConfigError(f"kiosk is not enrolled ({path} missing): run `enrol` first") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KioskConfigError(f"credential file {path} is unreadable: {exc}") from exc


def decode_secret(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise KioskConfigError("rotation secret is not base64url") from exc
