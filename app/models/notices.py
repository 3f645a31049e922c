"""Notices to people: what each person sees in their inbox."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow
from app.models.types import str_enum


class NoticeKind(enum.StrEnum):
    EXPOSURE = "exposure"
    RETRACTION = "retraction"


class Notice(Base):
    """What a person sees in their inbox. One per person per exposure event (their visit), however
    many cases overlapped it."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("person_id", "checkin_id", "kind", name="uq_notices_person_checkin_kind"),
        # For a deleted visit's SET NULL (retention and erasure delete visits): without it, every deleted
        # visit read the whole table. Only notices that still point at a visit.
        Index(
            "ix_notices_checkin_id",
            "checkin_id",
            postgresql_where=text("checkin_id IS NOT NULL"),
            sqlite_where=text("checkin_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id", ondelete="SET NULL"))
    kind: Mapped[NoticeKind] = mapped_column(str_enum(NoticeKind, "notice_kind"))
    risk: Mapped[str] = mapped_column(String(8))
    body_ru: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    read_at: Mapped[datetime | None]
    retracted_at: Mapped[datetime | None]
