"""Many posters at once: a ZIP with one file per poster and format, under safe ASCII names."""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Sequence

from app.services.poster_rendering.content import (
    FORMATS,
    PageSize,
    PosterContent,
    PosterFormat,
    PosterRenderingError,
    Progress,
)
from app.services.poster_rendering.formats import render_pdf, render_png, render_svg

_CYRILLIC_TO_LATIN = str.maketrans(
    {
        **dict(zip("абвгдезийклмнопрстуфыэ", "abvgdeziyklmnoprstufye", strict=True)),
        **{"ё": "e", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch"},
        **{"ъ": "", "ь": "", "ю": "yu", "я": "ya"},
    }
)


def safe_file_stem(content: PosterContent, index: int, digits: int = 4) -> str:
    """`0001-kafe-pushkin-vkhod-2`: ASCII only, no separators or dots, unique by its index."""
    words = f"{content.venue_name} {content.entrance_name or ''}".lower()
    ascii_text = unicodedata.normalize("NFKD", words.translate(_CYRILLIC_TO_LATIN))
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.encode("ascii", "ignore").decode()).strip("-")
    return f"{index:0{digits}d}-{slug[:60].rstrip('-') or 'poster'}"


def render_batch_zip(
    posters: Sequence[PosterContent],
    formats: Sequence[PosterFormat] = ("pdf",),
    page_size: PageSize = "A4",
    dpi: int = 150,
    progress: Progress | None = None,
) -> bytes:
    """A ZIP with one file per poster and format; `progress(done, total)` counts posters."""
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise PosterRenderingError(f"formats must be a non-empty subset of {FORMATS}")
    if not posters:
        raise PosterRenderingError("no posters to render")
    digits = max(4, len(str(len(posters))))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for done, content in enumerate(posters, start=1):
            stem = safe_file_stem(content, done, digits)
            # PDF and PNG are compressed already; deflating them again only costs time.
            if "pdf" in formats:
                archive.writestr(f"{stem}.pdf", render_pdf([content], page_size))
            if "png" in formats:
                archive.writestr(f"{stem}.png", render_png(content, dpi, page_size))
            if "svg" in formats:
                data = render_svg(content, page_size).encode()
                archive.writestr(f"{stem}.svg", data, compress_type=zipfile.ZIP_DEFLATED)
            if progress is not None:
                progress(done, len(posters))
    return buffer.getvalue()
