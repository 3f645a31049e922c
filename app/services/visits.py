"""Visit life-cycle rules that run without a visitor: automatic check-out at the planned end."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Select, select, update

from app.extensions import db
from app.models import Checkin, CheckoutReason


def overdue_query(now: datetime, batch_size: int) -> Select[tuple[int]]:
    """The ids of up to `batch_size` open visits whose planned end has passed, the most overdue first."""
    return (
        select(Checkin.id)
        # The last condition is always true; it names the condition of ix_checkins_open_planned_checkout_at
        # (app/models/checkins.py), which not every database infers from "<= now".
        .where(
            Checkin.checked_out_at.is_(None),
            Checkin.planned_checkout_at <= now,
            Checkin.planned_checkout_at.is_not(None),
        )
        .order_by(Checkin.planned_checkout_at)
        .limit(batch_size)
    )


class OverdueRun(NamedTuple):
    found: int  # overdue visits read (a full batch means more may be waiting)
    closed: int  # of those, checked out now (the rest changed meanwhile and are left alone)


def close_overdue_visits(now: datetime, batch_size: int) -> OverdueRun:
    """Check out up to `batch_size` open visits whose planned end has passed.

    The visit ends at its planned time, not at `now`: a late job run must not stretch anyone's stay
    (that would create exposures that never happened).
    """
    ids = db.session.scalars(overdue_query(now, batch_size)).all()
    if not ids:
        return OverdueRun(0, 0)
    # Guarded by both conditions of the read: a visit checked out, or extended by a repeat check-in, since
    # it was read is left alone (closed at its new planned end, it would end in the future).
    closed = db.session.execute(
        update(Checkin)
        .where(Checkin.id.in_(ids), Checkin.checked_out_at.is_(None), Checkin.planned_checkout_at <= now)
        .values(checked_out_at=Checkin.planned_checkout_at, checkout_reason=CheckoutReason.AUTO),
        execution_options={"synchronize_session": False},
    )
    db.session.flush()
    return OverdueRun(len(ids), int(closed.rowcount))
