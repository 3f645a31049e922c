"""Check-ins (visits) and the companions recorded with them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow
from app.models.types import str_enum


class CheckinSource(enum.StrEnum):
    POSTER = "poster"
    SMS = "sms"
    KIOSK_QR = "kiosk_qr"
    KIOSK_SCANNER = "kiosk_scanner"
    BLE = "ble"
    STAFF = "staff"


class CheckoutReason(enum.StrEnum):
    VISITOR = "visitor"
    AUTO = "auto"  # the planned end passed without a check-out
    NEXT_CHECKIN = "next_checkin"  # checked in elsewhere
    CORRECTED = "corrected"


OPEN_AND_PLANNED = "checked_out_at IS NULL AND planned_checkout_at IS NOT NULL"


# On PostgreSQL these are not row-by-row foreign keys: triggers check them once per statement with the
# same guarantee (migration l1_checkin_places_per_statement), since a kiosk batch inserts hundreds of
# visits at one venue, entrance and kiosk. The model keeps them: they are the schema's shape and order
# the ORM's inserts. SQLite enforces them as foreign keys.
PLACE_FOREIGN_KEYS_CHECKED_PER_STATEMENT = frozenset(
    {"fk_checkins_venue_id_venues", "fk_checkins_entrance_id_entrances", "fk_checkins_kiosk_id_kiosks"}
)


class Checkin(Base):
    __tablename__ = "checkins"
    __table_args__ = (
        CheckConstraint("party_size BETWEEN 1 AND 50", name="party_size_range"),
        CheckConstraint("planned_checkout_at > checked_in_at", name="planned_after_start"),
        # A person's visits in a time range.
        Index("ix_checkins_person_id_checked_in_at", "person_id", "checked_in_at"),
        # All visits at a venue overlapping a time range (stays are bounded, so a range on the start
        # widened by the longest stay walks only the relevant slice of this index). It holds every
        # column the matcher reads, so the overlap test and the rows it keeps never touch the table.
        Index(
            "ix_checkins_venue_id_checked_in_at",
            "venue_id",
            "checked_in_at",
            "checked_out_at",
            "planned_checkout_at",
            "person_id",
            "entrance_id",
            "party_size",
            "id",
        ),
        # Rows past retention.
        Index("ix_checkins_checked_in_at", "checked_in_at"),
        # Due auto check-outs: only open visits are in this index. Its condition differs from the one
        # below on purpose: "planned_checkout_at IS NOT NULL" (always true, and implied by the job's
        # "planned_checkout_at <= now") keeps it from answering "this person's open visit". With the
        # same condition, a planner whose statistics saw no open visits (taken at night, or after a
        # bulk load) took the two as equally cheap and could scan every open visit for each check-in.
        Index(
            "ix_checkins_open_planned_checkout_at",
            "planned_checkout_at",
            postgresql_where=text(OPEN_AND_PLANNED),
            sqlite_where=text(OPEN_AND_PLANNED),
        ),
        # One active visit per person, enforced by the schema rather than by hope.
        Index(
            "uq_checkins_one_open_visit_per_person",
            "person_id",
            unique=True,
            postgresql_where=text("checked_out_at IS NULL"),
            sqlite_where=text("checked_out_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    entrance_id: Mapped[int | None] = mapped_column(ForeignKey("entrances.id"))
    party_size: Mapped[int] = mapped_column(SmallInteger, default=1)
    source: Mapped[CheckinSource] = mapped_column(str_enum(CheckinSource, "checkin_source"))
    checked_in_at: Mapped[datetime]
    planned_checkout_at: Mapped[datetime]
    checked_out_at: Mapped[datetime | None]
    checkout_reason: Mapped[CheckoutReason | None] = mapped_column(str_enum(CheckoutReason, "checkout_reason"))
    # Set by kiosks (and any offline client) so that a re-sent batch never duplicates a visit.
    client_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("kiosks.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    corrected_at: Mapped[datetime | None]

    companions: Mapped[list[Companion]] = relationship(
        back_populates="checkin", cascade="all, delete-orphan", passive_deletes=True
    )


class Companion(Base):
    """Someone checked in with the visitor; a phone number lets them be notified too."""

    __tablename__ = "companions"

    id: Mapped[int] = mapped_column(primary_key=True)
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"), index=True)

    checkin: Mapped[Checkin] = relationship(back_populates="companions")
