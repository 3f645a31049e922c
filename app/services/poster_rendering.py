"""Print-ready venue posters (PDF, PNG, SVG) with a scannable QR code and Cyrillic text."""

from __future__ import annotations

import functools
import io
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M
from qrcode.exceptions import DataOverflowError
from reportlab.lib.pagesizes import A4, A5
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

PageSize = Literal["A4", "A5"]
PosterFormat = Literal["pdf", "png", "svg"]
Weight = Literal["regular", "bold"]
Progress = Callable[[int, int], None]

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
_FONT_FILES: dict[Weight, str] = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}
_PDF_FONT_NAMES: dict[Weight, str] = {"regular": "PosterSans", "bold": "PosterSans-Bold"}
# The SVG does not embed the 700 KB font; viewers fall back along this list.
SVG_FONT_FAMILY = "'DejaVu Sans', Verdana, Arial, sans-serif"

PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": A4, "A5": A5}
FORMATS: tuple[PosterFormat, ...] = ("pdf", "png", "svg")
QR_BORDER_MODULES = 4
# 15 cm box including the quiet zone: the symbol itself is >= 12 cm on A4 for URLs up to ~100 chars.
QR_MAX_PT = 15 / 2.54 * 72
MARGIN_PT = 40.0
MIN_DPI, MAX_DPI = 72, 600
MAX_INPUT_CHARS = 400  # more than any layout block can show; bounds the wrapping work
REPLACEMENT_CHAR = "\ufffd"
ELLIPSIS = "\u2026"

SMS_RU = "Отправьте SMS с кодом {code} на номер {number}"
SMS_EN = "Text {code} to {number}"
SCAN_RU = "Наведите камеру телефона на QR-код, чтобы отметиться"
SCAN_EN = "Point your phone camera at the QR code to check in"
VERIFY_LABEL = "Проверить подлинность постера / Check this poster is genuine:"


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


@dataclass(frozen=True)
class TextLine:
    """One centred line; `y` is the baseline in points from the top of the page."""

    text: str
    weight: Weight
    size: float
    y: float


@dataclass(frozen=True)
class PosterLayout:
    """Where everything goes on one page, in points from the top-left corner."""

    width: float
    height: float
    lines: tuple[TextLine, ...]
    qr_x: float
    qr_y: float
    qr_size: float  # side of the square QR box, quiet zone included


@dataclass(frozen=True)
class _Block:
    text: str
    weight: Weight
    sizes: tuple[float, ...]  # tried largest first until the text fits in max_lines
    max_lines: int
    gap_before: float


# --- text --------------------------------------------------------------------------------------

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _is_variation_selector(ch: str) -> bool:
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def clean_text(text: str) -> str:
    """Collapse whitespace and drop controls, bidi overrides, surrogates and unassigned code points.

    Venue names are hostile input: control characters would make the SVG ill-formed and bidi
    overrides (U+202E) could make a printed name read differently from what was registered.
    """
    kept: list[str] = []
    for ch in unicodedata.normalize("NFC", text[: MAX_INPUT_CHARS * 2]):
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in _DROPPED_CATEGORIES and not _is_variation_selector(ch):
            kept.append(ch)
    return " ".join("".join(kept).split())[:MAX_INPUT_CHARS]


@functools.cache
def _pdf_font(weight: Weight) -> str:
    """Register the bundled TTF with reportlab once per process and return its name."""
    name = _PDF_FONT_NAMES[weight]
    pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / _FONT_FILES[weight])))
    return name


@functools.cache
def _repertoire(weight: Weight) -> frozenset[int]:
    font = pdfmetrics.getFont(_pdf_font(weight))
    return frozenset(font.face.charToGlyph)  # type: ignore[attr-defined]


def drawable(text: str, weight: Weight = "regular") -> str:
    """Replace characters the bundled font lacks with U+FFFD for the PDF and PNG.

    reportlab would otherwise draw glyph 0 with no text behind it; characters beyond the BMP
    (the font's few emoji) are replaced too, because reportlab writes them into the ToUnicode
    map as invalid five-digit hex.
    """
    repertoire = _repertoire(weight)
    return "".join(ch if ord(ch) in repertoire and ord(ch) <= 0xFFFF else REPLACEMENT_CHAR for ch in text)


def text_width(text: str, weight: Weight, size: float) -> float:
    return pdfmetrics.stringWidth(drawable(text, weight), _pdf_font(weight), size)


def _longest_prefix(word: str, weight: Weight, size: float, width: float) -> int:
    used = 0.0
    for index, ch in enumerate(word):
        used += text_width(ch, weight, size)
        if used > width:
            return max(index, 1)  # always make progress, even if one glyph is wider than the line
    return len(word)


def wrap_text(text: str, weight: Weight, size: float, width: float) -> list[str]:
    """Greedy word wrap; words wider than the line (long URLs, CJK runs) are broken anywhere."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, weight, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while text_width(word, weight, size) > width:
            cut = _longest_prefix(word, weight, size, width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _ellipsize(line: str, weight: Weight, size: float, width: float) -> str:
    while line and text_width(line + ELLIPSIS, weight, size) > width:
        line = line[:-1].rstrip()
    return line + ELLIPSIS


def _fit(block: _Block, scale: float, width: float) -> tuple[float, list[str]]:
    """The largest size at which the block fits its line budget, else the smallest, cut with '…'."""
    for size in block.sizes:
        lines = wrap_text(block.text, block.weight, size * scale, width)
        if len(lines) <= block.max_lines:
            return size * scale, lines
    size = block.sizes[-1] * scale
    kept = lines[: block.max_lines]
    kept[-1] = _ellipsize(kept[-1], block.weight, size, width)
    return size, kept


# --- layout ------------------------------------------------------------------------------------


def _sizes(largest: int, smallest: int) -> tuple[float, ...]:
    return tuple(float(size) for size in range(largest, smallest - 1, -2))


def _blocks(content: PosterContent) -> tuple[list[_Block], list[_Block], list[_Block]]:
    """Blocks above the QR, below it, and pinned to the bottom edge (sizes in A4 points)."""
    code = clean_text(content.short_code)
    number = clean_text(content.sms_number)
    top = [_Block(clean_text(content.venue_name) or "—", "bold", _sizes(40, 22), 3, 0)]
    entrance = clean_text(content.entrance_name or "")
    if entrance:
        top.append(_Block(entrance, "regular", _sizes(24, 16), 2, 6))
    below = [
        _Block(code, "bold", _sizes(46, 20), 1, 0),
        _Block(SMS_RU.format(code=code, number=number), "regular", _sizes(15, 11), 2, 4),
        _Block(SMS_EN.format(code=code, number=number), "regular", _sizes(15, 11), 2, 0),
        _Block(SCAN_RU, "regular", _sizes(13, 11), 2, 8),
        _Block(SCAN_EN, "regular", _sizes(13, 11), 2, 0),
    ]
    bottom: list[_Block] = []
    verify = clean_text(content.verify_url or "")
    if verify:
        bottom.append(_Block(VERIFY_LABEL, "regular", (8.0,), 1, 0))
        bottom.append(_Block(verify, "regular", (8.0,), 2, 0))
    return top, below, bottom


def _stack(blocks: list[_Block], scale: float, width: float) -> tuple[list[TextLine], float]:
    """Lines laid out from y=0 downwards, and the height they take."""
    lines: list[TextLine] = []
    y = 0.0
    for block in blocks:
        size, texts = _fit(block, scale, width)
        y += block.gap_before * scale
        for text in texts:
            lines.append(TextLine(text, block.weight, size, y + size))
            y += size * 1.25
    return lines, y


def _shifted(lines: list[TextLine], dy: float) -> list[TextLine]:
    return [TextLine(line.text, line.weight, line.size, line.y + dy) for line in lines]


def layout_poster(content: PosterContent, page_size: PageSize = "A4") -> PosterLayout:
    """Title and entrance at the top, the QR as large as fits (at most 15 cm), texts below it."""
    if page_size not in PAGE_SIZES:
        raise PosterRenderingError(f"unknown page size {page_size!r}")
    width, height = PAGE_SIZES[page_size]
    scale = width / A4[0]  # A5 is the A4 design shrunk, so both print alike
    margin = MARGIN_PT * scale
    spacing = 14 * scale
    text_width_pt = width - 2 * margin
    top, below, bottom = (_stack(blocks, scale, text_width_pt) for blocks in _blocks(content))
    free = height - 2 * margin - top[1] - below[1] - bottom[1] - 3 * spacing
    qr_size = max(0.0, min(QR_MAX_PT * scale, free))
    slack = (free - qr_size) / 3  # spread evenly above the QR, below it and above the footer
    qr_y = margin + top[1] + spacing + slack
    below_y = qr_y + qr_size + spacing + slack
    bottom_y = height - margin - bottom[1]
    lines = _shifted(top[0], margin) + _shifted(below[0], below_y) + _shifted(bottom[0], bottom_y)
    return PosterLayout(width, height, tuple(lines), (width - qr_size) / 2, qr_y, qr_size)


# --- QR ----------------------------------------------------------------------------------------


def build_qr(url: str) -> qrcode.QRCode:
    """QR code with error correction M and a 4-module quiet zone, at the smallest version."""
    if not url:
        raise PosterRenderingError("poster URL is empty")
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QR_BORDER_MODULES, box_size=1)
    qr.add_data(url)
    try:
        qr.make(fit=True)
    # qrcode 8 overshoots to "version 41" and raises a plain ValueError before DataOverflowError.
    except (DataOverflowError, ValueError) as exc:
        raise PosterRenderingError(f"URL of {len(url)} characters does not fit a QR code") from exc
    return qr


def dark_runs(matrix: Sequence[Sequence[bool]]) -> Iterator[tuple[int, int, int]]:
    """(row, first column, length) of each horizontal run of dark modules.

    One rectangle per run instead of per module: fewer drawing operations and no hairline
    seams between neighbouring modules in anti-aliased viewers.
    """
    for row_index, row in enumerate(matrix):
        start = None
        for col, is_dark in enumerate([*row, False]):
            if is_dark and start is None:
                start = col
            elif not is_dark and start is not None:
                yield row_index, start, col - start
                start = None


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


@functools.lru_cache(maxsize=64)
def _pil_font(weight: Weight, size_px: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: same advance widths as the PDF measurements, no dependency on libraqm.
    return ImageFont.truetype(str(FONT_DIR / _FONT_FILES[weight]), size_px, layout_engine=ImageFont.Layout.BASIC)


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


# --- batches -----------------------------------------------------------------------------------

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
