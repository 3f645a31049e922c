"""Health officials, their roles and the system-wide switches they control."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow
from app.models.types import str_enum


class OfficialRole(enum.StrEnum):
    OFFICIAL = "official"
    SUPERVISOR = "supervisor"


class Official(Base):
    __tablename__ = "officials"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    email_enc: Mapped[bytes] = mapped_column(LargeBinary)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[OfficialRole] = mapped_column(str_enum(OfficialRole, "official_role"))
    # Seeing a full phone number is a separate grant, and every use of it is audited.
    can_reveal: Mapped[bool] = mapped_column(default=False)
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class SystemSwitch(Base):
    """Named on/off switches, such as the supervisors' global stop for outgoing notices."""

    __tablename__ = "system_switches"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    is_on: Mapped[bool] = mapped_column(default=False)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    reason: Mapped[str] = mapped_column(String(500), default="")
