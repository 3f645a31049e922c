"""Visit life-cycle rules that run without a visitor: automatic check-out at the planned end."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from app.extensions import db
from app.models import Checkin, CheckoutReason


def close_overdue_visits(now: datetime, batch_size: int) -> int:
    """Check out up to `batch_size` open visits whose planned end has passed; returns how many.

    The visit ends at its planned time, not at `now`: a late job run must not stretch anyone's stay
    (that would create exposures that never happened).
    """
    ids = db.session.scalars(
        select(Checkin.id)
        .where(Checkin.checked_out_at.is_(None), Checkin.planned_checkout_at <= now)
        .order_by(Checkin.planned_checkout_at)
        .limit(batch_size)
    ).all()
    if not ids:
        return 0
    db.session.execute(
        update(Checkin)
        .where(Checkin.id.in_(ids), Checkin.checked_out_at.is_(None))
        .values(checked_out_at=Checkin.planned_checkout_at, checkout_reason=CheckoutReason.AUTO),
        execution_options={"synchronize_session": False},
    )
    db.session.flush()
    return len(ids)
