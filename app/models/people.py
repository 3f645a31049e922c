"""People (visitors and cases), their remembered devices, one-time codes and personal code keys.

Every personal value is stored twice: encrypted (readable only with the data keys) and as a keyed
hash (to find the row without decrypting anything). See app/services/personal_data.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


def _deployment_timezone() -> str:
    """DEFAULT_TIMEZONE of the running application (Europe/Moscow outside one)."""
    from flask import current_app, has_app_context

    return str(current_app.config["DEFAULT_TIMEZONE"]) if has_app_context() else "Europe/Moscow"


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    oidc_subject_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    oidc_subject_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    email_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    preferred_language: Mapped[str] = mapped_column(String(2), default="ru")
    # Nobody tells us a person's zone: it is the deployment's (quiet hours are counted in it).
    timezone: Mapped[str] = mapped_column(String(64), default=_deployment_timezone)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)


class RememberedDevice(Base):
    """A phone that confirmed a code once; the cookie carries a token whose hash is stored here."""

    __tablename__ = "remembered_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LoginCode(Base):
    """A one-time SMS code; purged with the other short-lived data."""

    __tablename__ = "login_codes"
    __table_args__ = (Index("ix_login_codes_phone_hash_created_at", "phone_hash", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The number itself, encrypted: a person is created only after the code is confirmed.
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    consumed_at: Mapped[datetime | None]


class PersonalCodeKey(Base):
    """A key behind a person's rotating personal QR or Bluetooth token, registered from their page."""

    __tablename__ = "personal_code_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(8))  # "qr" or "ble"
    key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A revoked key still vouches for what a kiosk observed before; the purge removes it once that is
    # past retention (it links a key id that travelled in clear to a person).
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
