"""Print-ready venue posters (PDF, PNG, SVG) with a scannable QR code and Cyrillic text.

- content: what a poster shows, the page sizes and formats, and the error every renderer raises;
- text: hostile names cleaned, the bundled font, text measured and wrapped;
- layout: where the texts and the QR code go on a page;
- qr: the QR code and its dark runs;
- formats: one poster drawn as PDF pages, a PNG image or a standalone SVG;
- batches: many posters as a ZIP, with safe ASCII file names.
"""

from app.services.poster_rendering.batches import render_batch_zip, safe_file_stem
from app.services.poster_rendering.content import (
    FORMATS,
    PAGE_SIZES,
    PageSize,
    PosterContent,
    PosterFormat,
    PosterRenderingError,
    Progress,
)
from app.services.poster_rendering.formats import MAX_DPI, MIN_DPI, SVG_FONT_FAMILY, render_pdf, render_png, render_svg
from app.services.poster_rendering.layout import (
    MARGIN_PT,
    QR_MAX_PT,
    SCAN_EN,
    SCAN_RU,
    SMS_EN,
    SMS_RU,
    VERIFY_LABEL,
    PosterLayout,
    TextLine,
    layout_poster,
)
from app.services.poster_rendering.qr import QR_BORDER_MODULES, build_qr, dark_runs
from app.services.poster_rendering.text import (
    ELLIPSIS,
    FONT_DIR,
    MAX_INPUT_CHARS,
    REPLACEMENT_CHAR,
    Weight,
    clean_text,
    drawable,
    text_width,
    wrap_text,
)

__all__ = [
    "ELLIPSIS",
    "FONT_DIR",
    "FORMATS",
    "MARGIN_PT",
    "MAX_DPI",
    "MAX_INPUT_CHARS",
    "MIN_DPI",
    "PAGE_SIZES",
    "QR_BORDER_MODULES",
    "QR_MAX_PT",
    "REPLACEMENT_CHAR",
    "SCAN_EN",
    "SCAN_RU",
    "SMS_EN",
    "SMS_RU",
    "SVG_FONT_FAMILY",
    "VERIFY_LABEL",
    "PageSize",
    "PosterContent",
    "PosterFormat",
    "PosterLayout",
    "PosterRenderingError",
    "Progress",
    "TextLine",
    "Weight",
    "build_qr",
    "clean_text",
    "dark_runs",
    "drawable",
    "layout_poster",
    "render_batch_zip",
    "render_pdf",
    "render_png",
    "render_svg",
    "safe_file_stem",
    "text_width",
    "wrap_text",
]
