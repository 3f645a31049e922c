"""Rate-limit counters: one row per limited key and window (app/rate_limits.py keeps them)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class RateLimitCounter(Base):
    """Hits of one key (a limit, its scope and the address or device it counts) in the current window."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    # Unix time in seconds, as the `limits` library counts windows.
    expires_at: Mapped[float] = mapped_column(Float, index=True)
