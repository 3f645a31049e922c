"""Venues, their entrances or halls, poster signing keys and poster versions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow
from app.models.types import str_enum


class EntranceKind(enum.StrEnum):
    ENTRANCE = "entrance"
    HALL = "hall"  # halls narrow co-presence: two people in different halls were not together


class Venue(Base):
    __tablename__ = "venues"
    __table_args__ = (
        CheckConstraint("default_stay_minutes BETWEEN 15 AND 1440", name="default_stay_range"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str] = mapped_column(String(40), default="other")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    default_stay_minutes: Mapped[int] = mapped_column(Integer, default=60)
    capacity: Mapped[int | None]
    # The 9-digit code printed on posters for manual entry and SMS check-in.
    short_code: Mapped[str] = mapped_column(String(9), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]

    entrances: Mapped[list[Entrance]] = relationship(back_populates="venue", order_by="Entrance.id")


class Entrance(Base):
    __tablename__ = "entrances"

    id: Mapped[int] = mapped_column(primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[EntranceKind] = mapped_column(str_enum(EntranceKind, "entrance_kind"), default=EntranceKind.ENTRANCE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]

    venue: Mapped[Venue] = relationship(back_populates="entrances")


class PosterSigningKey(Base):
    """An Ed25519 key that signs poster tokens; retired keys still verify posters they signed."""

    __tablename__ = "poster_signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(16), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    private_key_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]  # no longer signs new posters
    revoked_at: Mapped[datetime | None]  # compromised: posters it signed stop verifying


class PosterVersion(Base):
    """One issued poster for an entrance. Reissuing revokes the previous version."""

    __tablename__ = "poster_versions"
    __table_args__ = (UniqueConstraint("entrance_id", "version", name="uq_poster_versions_entrance_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entrance_id: Mapped[int] = mapped_column(ForeignKey("entrances.id"))
    version: Mapped[int]
    signing_key_id: Mapped[int] = mapped_column(ForeignKey("poster_signing_keys.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
