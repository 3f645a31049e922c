"""A person's own visits: look one up, list those within retention, correct their times."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from app.errors import NotFoundError, ValidationError
from app.extensions import db
from app.models import MAX_ROW_ID, Checkin, CheckoutReason, Person
from app.services.checkins.rules import MAX_VISIT

# A correction may move a visit, not invent another one: the new start stays this close to the old.
MAX_CORRECTION_SHIFT = timedelta(hours=24)


def own_visit(person: Person, checkin_id: int) -> Checkin:
    """One of the person's own visits; anyone else's is 'not found' (its existence is not revealed)."""
    visit = db.session.get(Checkin, checkin_id) if 0 < checkin_id <= MAX_ROW_ID else None
    if visit is None or visit.person_id != person.id:
        raise NotFoundError("No such visit among yours.")
    return visit


def correct_times(
    person: Person,
    checkin_id: int,
    checked_in_at: datetime,
    checked_out_at: datetime,
    now: datetime,
    retention_days: int = 21,
) -> Checkin:
    """Let a visitor fix the times of their own visit, within limits that keep the record plausible.

    The corrected visit must start and end in the past, last at most 24 hours, start within the
    retention period and within 24 hours of its recorded start, and not overlap another of the
    person's visits. A correction closes an open visit.
    """
    visit = own_visit(person, checkin_id)
    if checked_in_at.tzinfo is None or checked_out_at.tzinfo is None:
        raise ValidationError("Times must include a time zone.", field="checked_in_at")
    if checked_out_at <= checked_in_at:
        raise ValidationError("The visit must end after it starts.", field="checked_out_at")
    if checked_out_at > now:
        raise ValidationError("A visit cannot end in the future.", field="checked_out_at")
    if checked_out_at - checked_in_at > MAX_VISIT:
        raise ValidationError("A visit cannot last longer than 24 hours.", field="checked_out_at")
    if checked_in_at < now - timedelta(days=retention_days):
        raise ValidationError(f"Only visits of the last {retention_days} days can be corrected.", field="checked_in_at")
    if abs(checked_in_at - visit.checked_in_at) > MAX_CORRECTION_SHIFT:
        raise ValidationError("A correction can move the start by at most 24 hours.", field="checked_in_at")
    other_end = func.coalesce(Checkin.checked_out_at, Checkin.planned_checkout_at)
    overlapping = db.session.scalar(
        select(func.count())
        .select_from(Checkin)
        .where(
            Checkin.person_id == person.id,
            Checkin.id != visit.id,
            Checkin.checked_in_at < checked_out_at,
            other_end > checked_in_at,
        )
    )
    if overlapping:
        raise ValidationError("These times overlap another of your visits.", field="checked_in_at")
    visit.checked_in_at = checked_in_at
    visit.checked_out_at = checked_out_at
    visit.planned_checkout_at = checked_out_at
    visit.checkout_reason = CheckoutReason.CORRECTED
    visit.corrected_at = now
    db.session.flush()
    # New times may meet a case matched before the correction.
    from app.services.exposures.rematching import reopen_after_late_visits

    reopen_after_late_visits(visit.venue_id, [(checked_in_at, checked_out_at)], now)
    return visit


def visits_of(person: Person, now: datetime, retention_days: int) -> list[Checkin]:
    """The person's visits still within retention, newest first."""
    return list(
        db.session.scalars(
            select(Checkin)
            .where(Checkin.person_id == person.id, Checkin.checked_in_at >= now - timedelta(days=retention_days))
            .order_by(Checkin.checked_in_at.desc())
        )
    )
