"""The audit trail: who read or changed what, when and why. Entries are never edited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import AuditEntry


class AuditTamperError(Exception):
    """Something tried to change or delete an audit entry outside the retention purge."""


def record(
    actor_kind: str,
    actor_id: int | None,
    action: str,
    *,
    now: datetime,
    subject_person_id: int | None = None,
    target: str = "",
    reason: str = "",
    case_id: int | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (so an action and its record commit together)."""
    entry = AuditEntry(
        at=now,
        actor_kind=actor_kind,
        actor_id=actor_id,
        action=action,
        subject_person_id=subject_person_id,
        target=target[:200],
        reason=reason[:500],
        case_id=case_id,
    )
    db.session.add(entry)
    db.session.flush()
    return entry


# Entries a person always sees in full, however many others there are: each reveal of their number.
ALWAYS_SHOWN = ("phone.reveal",)


def entries_about(person_id: int, limit: int = 100) -> list[AuditEntry]:
    """What was done with a person's data, newest first: shown to that person on their own page. The
    newest `limit` entries, and every reveal of their number besides (officials viewing a case page
    write an entry each time, and a hundred views must not hide a reveal)."""
    from sqlalchemy import select

    about = select(AuditEntry).where(AuditEntry.subject_person_id == person_id)
    newest = list(db.session.scalars(about.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))
    reveals = db.session.scalars(about.where(AuditEntry.action.in_(ALWAYS_SHOWN)))
    shown = {entry.id for entry in newest}
    entries = newest + [entry for entry in reveals if entry.id not in shown]
    return sorted(entries, key=lambda entry: (entry.at, entry.id), reverse=True)


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, flush_context: Any, instances: Any) -> None:
    # Append-only through the ORM; the purge job deletes expired rows with a bulk statement.
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditTamperError("audit entries cannot be changed or deleted")
