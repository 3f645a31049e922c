"""The append-only audit log of every access to personal data and every consequential action."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_subject_person_id_at", "subject_person_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # official, operator, system, visitor, kiosk
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(40))
    # Deliberately no foreign key: the entry outlives the person's erasure, as the law requires.
    subject_person_id: Mapped[int | None]
    target: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
