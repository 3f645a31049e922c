"""Retention: delete personal data past its time, in bounded batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, not_, or_, select

from app.extensions import db
from app.models import (
    AuditEntry,
    Case,
    Checkin,
    Companion,
    Exposure,
    LoginCode,
    Notice,
    OutboxMessage,
    Person,
    PersonalCodeKey,
)


@dataclass(frozen=True)
class PurgeTarget:
    """One table's retention rule: which column ages a row, and how long it lives."""

    name: str
    model: Any
    age_column: Any
    days: Callable[[dict[str, Any]], int]


def _visit_days(cfg: dict[str, Any]) -> int:
    return int(cfg["RETENTION_DAYS"])


def _orphan_person() -> Any:
    # People who have nothing left that needs them: no visits of their own, none they came to as a
    # companion (a companion's "last seen" is written at most once an hour, so it can be up to an hour
    # older than the visit that keeps them), no cases.
    return and_(
        not_(exists().where(Checkin.person_id == Person.id)),
        not_(exists().where(Companion.person_id == Person.id)),
        not_(exists().where(Case.person_id == Person.id)),
    )


# Children before parents, so foreign keys never block a batch.
TARGETS: tuple[PurgeTarget, ...] = (
    PurgeTarget("outbox_messages", OutboxMessage, OutboxMessage.created_at, _visit_days),
    PurgeTarget("notices", Notice, Notice.created_at, _visit_days),
    PurgeTarget("exposures", Exposure, Exposure.created_at, _visit_days),
    PurgeTarget("login_codes", LoginCode, LoginCode.created_at, _visit_days),
    PurgeTarget("checkins", Checkin, Checkin.checked_in_at, _visit_days),
    # Keys revoked (replaced or turned off) longer ago than a kiosk may send late observations.
    PurgeTarget("personal_code_keys", PersonalCodeKey, PersonalCodeKey.revoked_at, _visit_days),
    PurgeTarget("people", Person, Person.created_at, _visit_days),
    PurgeTarget("audit_entries", AuditEntry, AuditEntry.at, lambda cfg: int(cfg["AUDIT_RETENTION_DAYS"])),
)


def purge_batch(target: PurgeTarget, now: datetime, config: dict[str, Any], batch_size: int) -> int:
    """Delete up to `batch_size` rows of one table that are past retention; returns how many."""
    cutoff = now - timedelta(days=target.days(config))
    condition = target.age_column < cutoff
    if target.model is Person:
        # A person is kept while seen recently, even if created long ago.
        condition = and_(
            Person.created_at < cutoff,
            or_(Person.last_seen_at.is_(None), Person.last_seen_at < cutoff),
            _orphan_person(),
        )
    ids = db.session.scalars(select(target.model.id).where(condition).order_by(target.model.id).limit(batch_size)).all()
    if not ids:
        return 0
    db.session.execute(
        delete(target.model).where(target.model.id.in_(ids)),
        execution_options={"synchronize_session": False},
    )
    db.session.flush()
    return len(ids)
