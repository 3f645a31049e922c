"""Positive cases, the exposures matching finds for them, and venue outbreaks."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow
from app.models.types import str_enum


class CaseStatus(enum.StrEnum):
    ACTIVE = "active"
    ANNULLED = "annulled"


class RiskLevel(enum.StrEnum):
    HIGH = "high"
    LOW = "low"


class ExposureStatus(enum.StrEnum):
    NEW = "new"  # found, awaiting review
    APPROVED = "approved"  # a notice was queued
    WITHDRAWN = "withdrawn"  # its case was annulled


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        # The matching job picks up cases not yet matched.
        Index(
            "ix_cases_pending_match",
            "created_at",
            postgresql_where=text("matched_at IS NULL"),
            sqlite_where=text("matched_at IS NULL"),
        ),
        # Matched by the job, their venues' outbreaks not counted yet (record_pending_outbreaks): none
        # or one run's cases.
        Index(
            "ix_cases_outbreaks_pending",
            "id",
            postgresql_where=text("outbreaks_pending"),
            sqlite_where=text("outbreaks_pending = 1"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    tested_on: Mapped[date]
    symptom_onset: Mapped[date | None]
    isolated_on: Mapped[date | None]
    status: Mapped[CaseStatus] = mapped_column(str_enum(CaseStatus, "case_status"), default=CaseStatus.ACTIVE)
    # A lab's own reference: re-importing the same results file finds the case instead of adding it.
    lab_reference: Mapped[str | None] = mapped_column(String(100), unique=True)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    window_starts_at: Mapped[datetime | None]
    window_ends_at: Mapped[datetime | None]
    matched_at: Mapped[datetime | None]
    # The matching job counts venue outbreaks once per run, after its batches: set when a batch matched
    # the case, cleared when its venues were counted (a run that stops half-way leaves it for the next).
    outbreaks_pending: Mapped[bool] = mapped_column(default=False, server_default=false())
    annulled_at: Mapped[datetime | None]
    annul_reason: Mapped[str | None] = mapped_column(String(500))


AWAITING_NOTICE = "status = 'approved' AND notice_id IS NULL"


# On PostgreSQL these are not row-by-row foreign keys: triggers check them once per statement, and do
# their ON DELETE actions, with the same guarantee (migration n1_exposure_references), since the matching
# job stores a thousand exposures per statement; the insert locks no parent row, and an advisory lock keeps
# it apart from the deletes' cascades (migration p1_exposure_references_unlocked). SQLite keeps them as
# foreign keys.
EXPOSURE_FOREIGN_KEYS_CHECKED_PER_STATEMENT = frozenset(
    {
        "fk_exposures_case_id_cases",
        "fk_exposures_case_checkin_id_checkins",
        "fk_exposures_checkin_id_checkins",
        "fk_exposures_person_id_people",
        "fk_exposures_venue_id_venues",
    }
)


class Exposure(Base):
    """One person exposed on one visit by one case. Unique per (case, check-in, person): a visitor's
    companions share the visitor's check-in but are exposed, and notified, as themselves."""

    __tablename__ = "exposures"
    __table_args__ = (
        UniqueConstraint("case_id", "checkin_id", "person_id", name="uq_exposures_case_checkin_person"),
        Index("ix_exposures_status_created_at", "status", "created_at"),
        Index("ix_exposures_venue_id_created_at", "venue_id", "created_at"),
        # For a deleted case visit's SET NULL (retention and erasure delete visits): without it, every
        # deleted visit read the whole table.
        Index("ix_exposures_case_checkin_id", "case_checkin_id"),
        # For a deleted notice's SET NULL. Only exposures with a notice: the new ones the matcher writes
        # by the million skip it, and nothing looks up "no notice" through it (see the next one).
        Index(
            "ix_exposures_notice_id",
            "notice_id",
            postgresql_where=text("notice_id IS NOT NULL"),
            sqlite_where=text("notice_id IS NOT NULL"),
        ),
        # Approved and still waiting for a notice: normally none or a few, looked for after every approval
        # and every minute by the policy job (through the status index it read every approved exposure).
        Index(
            "ix_exposures_awaiting_notice",
            "case_id",
            postgresql_where=text(AWAITING_NOTICE),
            sqlite_where=text(AWAITING_NOTICE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    case_checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id", ondelete="SET NULL"))
    checkin_id: Mapped[int] = mapped_column(ForeignKey("checkins.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    risk: Mapped[RiskLevel] = mapped_column(str_enum(RiskLevel, "risk_level"))
    overlap_seconds: Mapped[int] = mapped_column(Integer)
    reason_en: Mapped[str] = mapped_column(Text)
    reason_ru: Mapped[str] = mapped_column(Text)
    status: Mapped[ExposureStatus] = mapped_column(
        str_enum(ExposureStatus, "exposure_status"), default=ExposureStatus.NEW
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id", ondelete="SET NULL"))


class VenueOutbreak(Base):
    """Two or more distinct cases at one venue within the outbreak window."""

    __tablename__ = "venue_outbreaks"
    __table_args__ = (UniqueConstraint("venue_id", "window_starts_at", name="uq_venue_outbreaks_venue_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    venue_id: Mapped[int] = mapped_column(ForeignKey("venues.id"))
    window_starts_at: Mapped[datetime]
    case_count: Mapped[int]
    detected_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
