"""Printable posters: the current poster of an entrance, or every poster of an organisation."""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import select

from app.errors import ValidationError
from app.extensions import db
from app.models import Entrance, Venue
from app.services.poster_rendering import (
    FORMATS,
    PAGE_SIZES,
    PageSize,
    PosterContent,
    PosterFormat,
    Progress,
    render_batch_zip,
    render_pdf,
    render_png,
    render_svg,
    safe_file_stem,
)
from app.services.posters.issuing import current_token, poster_url, verify_url

MEDIA_TYPES = {"pdf": "application/pdf", "png": "image/png", "svg": "image/svg+xml"}


def parse_page_size(value: str | None) -> PageSize:
    size = (value or "A4").upper()
    if size not in PAGE_SIZES:
        raise ValidationError("The page size must be A4 or A5.", field="size")
    return size  # type: ignore[return-value]


def parse_format(value: str | None) -> PosterFormat:
    fmt = (value or "pdf").lower()
    if fmt not in FORMATS:
        raise ValidationError("The poster format must be pdf, png or svg.", field="format")
    return fmt  # type: ignore[return-value]


def poster_content(entrance: Entrance, now: datetime) -> PosterContent:
    """What goes on the entrance's current poster (issuing the first version if needed)."""
    if entrance.archived_at is not None or entrance.venue.archived_at is not None:
        raise ValidationError("Posters are only printed for open venues and entrances.")
    token = current_token(entrance, now)
    venue = entrance.venue
    return PosterContent(
        url=poster_url(token),
        venue_name=venue.name,
        entrance_name=entrance.name if len(venue.entrances) > 1 else None,
        short_code=venue.short_code,
        sms_number=current_app.config["SMS_SHORT_NUMBER"],
        verify_url=verify_url(token),
    )


def render_entrance_poster(entrance: Entrance, fmt: PosterFormat, page_size: PageSize, now: datetime) -> bytes:
    content = poster_content(entrance, now)
    if fmt == "pdf":
        return render_pdf([content], page_size)
    if fmt == "png":
        return render_png(content, page_size=page_size)
    return render_svg(content, page_size).encode()


def poster_filename(entrance: Entrance, fmt: str) -> str:
    return f"{safe_file_stem(PosterContent('-', entrance.venue.name, entrance.name, '', '', None), entrance.id)}.{fmt}"


def organisation_poster_contents(organisation_id: int, now: datetime) -> list[PosterContent]:
    """Current posters of every open entrance of every open venue, venue by venue."""
    entrances = db.session.scalars(
        select(Entrance)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Venue.organisation_id == organisation_id, Venue.archived_at.is_(None), Entrance.archived_at.is_(None))
        .order_by(Venue.name, Venue.id, Entrance.id)
    ).all()
    if not entrances:
        raise ValidationError("The organisation has no open venues to print posters for.")
    return [poster_content(entrance, now) for entrance in entrances]


def render_organisation_posters(
    organisation_id: int,
    archive: str,
    page_size: PageSize,
    now: datetime,
    progress: Progress | None = None,
) -> bytes:
    """All posters of an organisation as one PDF (a page each) or as a ZIP of single-poster PDFs."""
    contents = organisation_poster_contents(organisation_id, now)
    if archive == "pdf":
        return render_pdf(contents, page_size, progress)
    if archive == "zip":
        return render_batch_zip(contents, ("pdf",), page_size, progress=progress)
    raise ValidationError("Batches come as pdf or zip.", field="format")
