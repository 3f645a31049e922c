"""Configuration: defaults in code, then environment variables, then explicit overrides.

Every setting is declared once in SETTINGS with its type, so a bad value stops start-up with one line
naming the variable, and the README's table can be checked against this list.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENVIRONMENTS = ("development", "testing", "production")


class ConfigError(Exception):
    """Configuration that must stop start-up; the message is one line meant for a person."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: str) -> int:
    return int(raw.strip())


def _parse_str(raw: str) -> str:
    return raw


def _parse_hhmm(raw: str) -> str:
    hours, minutes = raw.strip().split(":")
    if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise ValueError("expected HH:MM")
    return f"{int(hours):02d}:{int(minutes):02d}"


def _parse_zone(raw: str) -> str:
    ZoneInfo(raw.strip())
    return raw.strip()


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return raw

    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("APP_ENV", _parse_choice(*ENVIRONMENTS), "production", "development, testing or production"),
    Setting("SECRET_KEY", _parse_str, None, "signs sessions, cookies and CSRF tokens", secret=True),
    Setting("DATABASE_URL", _parse_str, None, "SQLAlchemy URL: sqlite:///... or postgresql+psycopg://..."),
    Setting(
        "DATA_ENCRYPTION_KEYS",
        _parse_str,
        None,
        "personal-data keys, 'kid:base64key' comma-separated, newest first (AES-256-GCM)",
        secret=True,
    ),
    Setting(
        "LOOKUP_HASH_KEY", _parse_str, None, "base64 key for the keyed hashes that find personal data", secret=True
    ),
    Setting(
        "CONTACT_PUBLIC_KEY",
        _parse_str,
        "",
        "sealed mode: X25519 public key (base64) that visitors' contact data is sealed to",
    ),
    Setting(
        "CONTACT_PRIVATE_KEY",
        _parse_str,
        "",
        "sealed mode: its private half, only where contacts are read",
        secret=True,
    ),
    Setting("PUBLIC_BASE_URL", _parse_str, "http://127.0.0.1:5000", "the address printed on posters and in messages"),
    Setting("DEFAULT_TIMEZONE", _parse_zone, "Europe/Moscow", "time zone for people whose zone is unknown"),
    Setting("RETENTION_DAYS", _parse_int, 21, "days visits, codes, exposures, notices and messages are kept"),
    Setting("AUDIT_RETENTION_DAYS", _parse_int, 365, "days audit entries are kept"),
    Setting("PURGE_BATCH_SIZE", _parse_int, 5000, "rows deleted per transaction by the purge job"),
    Setting("AUTO_CHECKOUT_BATCH_SIZE", _parse_int, 5000, "visits closed per transaction by auto check-out"),
    Setting("MATCH_TAIL_MINUTES", _parse_int, 30, "minutes the air stays infectious after a case left"),
    Setting("MATCH_HIGH_RISK_MINUTES", _parse_int, 15, "overlap (with the tail) that makes an exposure high risk"),
    Setting("MATCH_LEAD_DAYS", _parse_int, 2, "infectious window starts this many days before onset or test"),
    Setting("OUTBREAK_CASES", _parse_int, 2, "distinct cases at one venue that mark an outbreak"),
    Setting("OUTBREAK_WINDOW_DAYS", _parse_int, 7, "days within which those cases must fall"),
    Setting("AUTO_APPROVE_AFTER_MINUTES", _parse_int, 0, "approve exposures automatically after this delay; 0 = never"),
    Setting("QUIET_HOURS_START", _parse_hhmm, "22:00", "no SMS from this local time, but codes and replies to texts"),
    Setting("QUIET_HOURS_END", _parse_hhmm, "09:00", "... until this local time"),
    Setting("OTP_TTL_SECONDS", _parse_int, 300, "how long an SMS sign-in code is valid"),
    Setting("OTP_MAX_ATTEMPTS", _parse_int, 5, "wrong guesses allowed per SMS code"),
    Setting("OTP_PER_NUMBER_PER_HOUR", _parse_int, 3, "SMS codes one phone number may receive per hour"),
    Setting("OTP_PER_DEVICE_PER_HOUR", _parse_int, 10, "SMS codes one browser may request per hour"),
    Setting("OTP_PER_ADDRESS_PER_HOUR", _parse_int, 20, "SMS codes one IP address may request per hour"),
    Setting("DEVICE_COOKIE_DAYS", _parse_int, 365, "how long a phone stays remembered after a confirmed code"),
    Setting("KIOSK_CODE_STEP_SECONDS", _parse_int, 10, "how often a kiosk's on-screen QR changes"),
    Setting("KIOSK_CODE_WINDOW_STEPS", _parse_int, 1, "time steps of tolerance when checking rotating codes"),
    Setting("BLE_KEY_HOURS", _parse_int, 24, "a phone's Bluetooth check-in key is replaced after this many hours"),
    Setting("DISPATCH_BATCH_SIZE", _parse_int, 500, "messages claimed per dispatcher round"),
    Setting("DISPATCH_MAX_ATTEMPTS", _parse_int, 8, "send attempts before a message is marked failed"),
    Setting("DISPATCH_CONCURRENCY", _parse_int, 16, "parallel gateway submissions per dispatcher"),
    Setting("DISPATCH_CLAIM_SECONDS", _parse_int, 120, "how long a claimed message is reserved for one dispatcher"),
    Setting("QUIET_HOURS_SPREAD_MINUTES", _parse_int, 60, "morning messages after quiet hours spread over this long"),
    Setting("OFFICIAL_SESSION_MINUTES", _parse_int, 30, "officials are signed out after this much inactivity"),
    Setting(
        "SMS_CHANNEL", _parse_choice("log", "kannel", "http"), "log", "log prints messages; kannel or http send them"
    ),
    Setting("SMS_SHORT_NUMBER", _parse_str, "7377", "the number visitors text venue codes to"),
    Setting(
        "KANNEL_SENDSMS_URL", _parse_str, "", "Kannel smsbox sendsms URL, e.g. http://127.0.0.1:13013/cgi-bin/sendsms"
    ),
    Setting("KANNEL_USERNAME", _parse_str, "", "Kannel sendsms user"),
    Setting("KANNEL_PASSWORD", _parse_str, "", "Kannel sendsms password", secret=True),
    Setting("SMS_HTTP_URL", _parse_str, "", "generic HTTP SMS gateway URL (SMS_CHANNEL=http)"),
    Setting("SMS_HTTP_TOKEN", _parse_str, "", "bearer token for the generic HTTP gateway", secret=True),
    Setting(
        "SMS_INBOUND_SECRET",
        _parse_str,
        "",
        "shared secret the gateway sends with incoming SMS and reports",
        secret=True,
    ),
    Setting("SMTP_HOST", _parse_str, "", "SMTP server for e-mail; empty disables e-mail"),
    Setting("SMTP_PORT", _parse_int, 25, "SMTP port"),
    Setting("SMTP_FROM", _parse_str, "noreply@localhost", "sender address of e-mails"),
    Setting("OIDC_ISSUER", _parse_str, "", "mos.ru (or any) OpenID Connect issuer URL; empty hides the button"),
    Setting("OIDC_CLIENT_ID", _parse_str, "", "OpenID Connect client id"),
    Setting("OIDC_CLIENT_SECRET", _parse_str, "", "OpenID Connect client secret", secret=True),
    Setting("JOBS_LOCK_PATH", _parse_str, "", "SQLite only: lock file for the single active jobs process"),
    Setting(
        "RATELIMIT_STORAGE_URI",
        _parse_str,
        "database://",
        "rate-limit counters: database:// in the app's database (all workers count together), memory:// per "
        "process, or a limits storage URI such as redis://",
    ),
    Setting("LOG_FORMAT", _parse_choice("json", "text"), "json", "json for production, text for a terminal"),
    Setting("LOG_LEVEL", _parse_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "log level"),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
REQUIRED_OUTSIDE_DEV = ("SECRET_KEY", "DATABASE_URL", "DATA_ENCRYPTION_KEYS", "LOOKUP_HASH_KEY")


def load_config(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    instance_path: str | None = None,
) -> dict[str, Any]:
    """Build the settings dict, raising ConfigError with one readable line on any problem."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    unknown = sorted(k for k in overrides if k not in SETTING_NAMES and not k.isupper())
    if unknown:
        raise ConfigError(f"unknown setting override: {', '.join(unknown)}")
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        value = setting.default
        raw = environ.get(setting.name)
        if raw is not None and raw != "":
            try:
                value = setting.parse(raw)
            except (ValueError, ZoneInfoNotFoundError) as exc:
                raise ConfigError(f"{setting.name}={raw!r} is not valid: {exc}") from None
        config[setting.name] = value
    config.update(overrides)
    env = config["APP_ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV={env!r} is not valid: expected one of {', '.join(ENVIRONMENTS)}")
    if env == "development":
        _fill_development_defaults(config, instance_path)
    missing = [name for name in REQUIRED_OUTSIDE_DEV if not config.get(name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set when APP_ENV={env}")
    for name in ("RETENTION_DAYS", "PURGE_BATCH_SIZE", "AUTO_CHECKOUT_BATCH_SIZE", "OUTBREAK_CASES", "BLE_KEY_HOURS"):
        if int(config[name]) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if config["SMS_CHANNEL"] == "kannel" and not config["KANNEL_SENDSMS_URL"]:
        raise ConfigError("KANNEL_SENDSMS_URL must be set when SMS_CHANNEL=kannel")
    secret = config["SMS_INBOUND_SECRET"]
    # Kannel rewrites %-escapes in the delivery-report URL that carries the secret.
    if config["SMS_CHANNEL"] == "kannel" and not re.fullmatch(r"[A-Za-z0-9._~-]{8,}", secret or ""):
        raise ConfigError("SMS_INBOUND_SECRET must be 8+ letters, digits or . _ ~ - when SMS_CHANNEL=kannel")
    if config["SMS_CHANNEL"] == "http" and not config["SMS_HTTP_URL"]:
        raise ConfigError("SMS_HTTP_URL must be set when SMS_CHANNEL=http")
    return config


def _fill_development_defaults(config: dict[str, Any], instance_path: str | None) -> None:
    """Development only: an embedded SQLite database and per-machine random keys under instance/.

    The keys are generated once and kept in instance/dev-secrets.env, so data written in one `make run`
    stays readable in the next; production has no such path and must be configured.
    """
    instance = Path(instance_path or "instance")
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{(instance / 'checkin.sqlite3').resolve()}"
    if not config.get("JOBS_LOCK_PATH"):
        config["JOBS_LOCK_PATH"] = str((instance / "jobs.lock").resolve())
    needed = [n for n in ("SECRET_KEY", "DATA_ENCRYPTION_KEYS", "LOOKUP_HASH_KEY") if not config.get(n)]
    if not needed:
        return
    secrets_file = instance / "dev-secrets.env"
    stored = _read_env_file(secrets_file)
    if not all(stored.get(n) for n in needed):
        stored = {**generate_secrets(), **stored}
        instance.mkdir(parents=True, exist_ok=True)
        secrets_file.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
        secrets_file.chmod(0o600)
    for name in needed:
        config[name] = stored[name]


def generate_secrets() -> dict[str, str]:
    """Fresh random values for every secret setting, in the format the settings expect."""
    import base64

    def b64() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    return {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_ENCRYPTION_KEYS": f"k{secrets.token_hex(3)}:{b64()}",
        "LOOKUP_HASH_KEY": b64(),
    }


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
