"""One poster drawn in each output format: PDF pages, a PNG image, a standalone SVG."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw
from reportlab.pdfgen.canvas import Canvas

from app.services.poster_rendering.content import PAGE_SIZES, PageSize, PosterContent, PosterRenderingError, Progress
from app.services.poster_rendering.layout import layout_poster
from app.services.poster_rendering.qr import build_qr, dark_runs
from app.services.poster_rendering.text import _pdf_font, _pil_font, clean_text, drawable

# The SVG does not embed the 700 KB font; viewers fall back along this list.
SVG_FONT_FAMILY = "'DejaVu Sans', Verdana, Arial, sans-serif"
MIN_DPI, MAX_DPI = 72, 600


# --- PDF ---------------------------------------------------------------------------------------


def _draw_pdf_page(canvas: Canvas, content: PosterContent, page_size: PageSize) -> None:
    layout = layout_poster(content, page_size)
    matrix = build_qr(content.url).get_matrix()
    for line in layout.lines:
        canvas.setFont(_pdf_font(line.weight), line.size)
        canvas.drawCentredString(layout.width / 2, layout.height - line.y, drawable(line.text, line.weight))
    module = layout.qr_size / len(matrix)
    path = canvas.beginPath()
    for row, col, length in dark_runs(matrix):
        top = layout.qr_y + row * module
        path.rect(layout.qr_x + col * module, layout.height - top - module, length * module, module)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.showPage()


def render_pdf(
    posters: Sequence[PosterContent],
    page_size: PageSize = "A4",
    progress: Progress | None = None,
) -> bytes:
    """One page per poster, the bundled font embedded (subset) so Cyrillic prints and extracts."""
    if not posters:
        raise PosterRenderingError("no posters to render")
    buffer = io.BytesIO()
    # The embedded font as the initial font keeps an unembedded Helvetica out of the resources.
    canvas = Canvas(
        buffer,
        pagesize=PAGE_SIZES[page_size],
        pageCompression=1,
        initialFontName=_pdf_font("regular"),
    )
    canvas.setTitle(clean_text(posters[0].venue_name) if len(posters) == 1 else f"{len(posters)} posters")
    for done, content in enumerate(posters, start=1):
        _draw_pdf_page(canvas, content, page_size)
        if progress is not None:
            progress(done, len(posters))
    canvas.save()
    return buffer.getvalue()


# --- PNG ---------------------------------------------------------------------------------------


def render_png(poster: PosterContent, dpi: int = 150, page_size: PageSize = "A4") -> bytes:
    """Greyscale page image; QR modules are whole pixels so the code stays sharp at any dpi."""
    if not MIN_DPI <= dpi <= MAX_DPI:  # the upper bound keeps a typo from allocating gigabytes
        raise PosterRenderingError(f"dpi must be between {MIN_DPI} and {MAX_DPI}, not {dpi}")
    layout = layout_poster(poster, page_size)
    px = dpi / 72
    image = Image.new("L", (round(layout.width * px), round(layout.height * px)), 255)
    draw = ImageDraw.Draw(image)
    for line in layout.lines:
        font = _pil_font(line.weight, max(1, round(line.size * px)))
        position = (image.width / 2, line.y * px)
        draw.text(position, drawable(line.text, line.weight), font=font, fill=0, anchor="ms")
    qr = build_qr(poster.url)
    modules = len(qr.get_matrix())
    qr.box_size = max(1, math.floor(layout.qr_size * px / modules))
    qr_image = qr.make_image().get_image().convert("L")
    inset = (layout.qr_size * px - qr_image.width) / 2  # flooring the module leaves a sliver
    image.paste(qr_image, (round(layout.qr_x * px + inset), round(layout.qr_y * px + inset)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


# --- SVG ---------------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render_svg(poster: PosterContent, page_size: PageSize = "A4") -> str:
    """Standalone SVG in physical page size; the QR is one path, text is escaped text elements.

    Text keeps characters the bundled font lacks: a viewer with a wider font shows them.
    """
    layout = layout_poster(poster, page_size)
    matrix = build_qr(poster.url).get_matrix()
    module = layout.qr_size / len(matrix)
    path = "".join(
        f"M{_num(layout.qr_x + col * module)} {_num(layout.qr_y + row * module)}"
        f"h{_num(length * module)}v{_num(module)}h{_num(-length * module)}z"
        for row, col, length in dark_runs(matrix)
    )
    mm = 25.4 / 72
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(layout.width * mm)}mm"'
        f' height="{_num(layout.height * mm)}mm"'
        f' viewBox="0 0 {_num(layout.width)} {_num(layout.height)}">',
        f"<title>{escape(clean_text(poster.venue_name))}</title>",
        '<rect width="100%" height="100%" fill="#fff"/>',
        f'<path fill="#000" shape-rendering="crispEdges" d="{path}"/>',
        f'<g font-family={quoteattr(SVG_FONT_FAMILY)} text-anchor="middle" fill="#000">',
    ]
    for line in layout.lines:
        weight = ' font-weight="bold"' if line.weight == "bold" else ""
        parts.append(
            f'<text x="{_num(layout.width / 2)}" y="{_num(line.y)}"'
            f' font-size="{_num(line.size)}"{weight}>{escape(line.text)}</text>'
        )
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)
