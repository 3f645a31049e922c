"""What a poster shows, the page sizes and output formats, and the error every renderer raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reportlab.lib.pagesizes import A4, A5

PageSize = Literal["A4", "A5"]
PosterFormat = Literal["pdf", "png", "svg"]
Progress = Callable[[int, int], None]

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "A5": A5}
FORMATS: tuple[PosterFormat, ...] = ("pdf", "png", "svg")


class PosterRenderingError(ValueError):
    """The poster cannot be rendered from the given content (e.g. URL too long for a QR code)."""


@dataclass(frozen=True)
class PosterContent:
    url: str
    venue_name: str
    entrance_name: str | None
    short_code: str
    sms_number: str
    verify_url: str | None
