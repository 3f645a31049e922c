"""One-time secrets (operator invitations, kiosk pairing codes) claimed so that of two requests using the
same secret at the same moment, exactly one goes on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update

from app.extensions import db


def claim(used_at: Any, row_id: int, now: datetime) -> bool:
    """Set the row's `used_at` column (a mapped attribute, such as KioskPairingCode.used_at) to `now` if it
    is still unset; whether this call set it. A guarded update: the database lets one writer through and
    the other sees the column set (PostgreSQL re-reads the row after waiting; SQLite serialises writers)."""
    model = used_at.class_
    result = db.session.execute(
        update(model).where(model.id == row_id, used_at.is_(None)).values({used_at.key: now}),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount == 1)
