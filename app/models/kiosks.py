"""Kiosk tablets at building doors and the one-time codes that enrol them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class KioskPairingCode(Base):
    """A one-time code an operator gives to a tablet; only its hash is stored."""

    __tablename__ = "kiosk_pairing_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    entrance_id: Mapped[int] = mapped_column(ForeignKey("entrances.id"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Kiosk(Base):
    """An enrolled tablet at an entrance; its credential is stored only as a hash."""

    __tablename__ = "kiosks"

    id: Mapped[int] = mapped_column(primary_key=True)
    entrance_id: Mapped[int] = mapped_column(ForeignKey("entrances.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    credential_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    rotation_secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(500))
    revoked_at: Mapped[datetime | None]
