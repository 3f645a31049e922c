"""Organisations that run venues, and the operators who manage them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow
from app.models.types import str_enum


class OperatorRole(enum.StrEnum):
    OWNER = "owner"
    MANAGER = "manager"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]

    operators: Mapped[list[Operator]] = relationship(back_populates="organisation")


class Operator(Base):
    """A venue operator's login. The e-mail is personal data: encrypted, found by keyed hash."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    email_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    email_enc: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[OperatorRole] = mapped_column(str_enum(OperatorRole, "operator_role"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]

    organisation: Mapped[Organisation] = relationship(back_populates="operators")


class OperatorInvitation(Base):
    """A one-time invitation for another operator; only the token's hash is stored."""

    __tablename__ = "operator_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    email_enc: Mapped[bytes] = mapped_column(LargeBinary)
    role: Mapped[OperatorRole] = mapped_column(str_enum(OperatorRole, "operator_role"))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
