"""Where everything goes on a page: the texts, fitted to their line budgets, and the QR box."""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.lib.pagesizes import A4

from app.services.poster_rendering.content import PAGE_SIZES, PageSize, PosterContent, PosterRenderingError
from app.services.poster_rendering.text import Weight, _ellipsize, clean_text, wrap_text

# 15 cm box including the quiet zone: the symbol itself is >= 12 cm on A4 for URLs up to ~100 chars.
QR_MAX_PT = 15 / 2.54 * 72
MARGIN_PT = 40.0

SMS_RU = "Отправьте SMS с кодом {code} на номер {number}"
SMS_EN = "Text {code} to {number}"
SCAN_RU = "Наведите камеру телефона на QR-код, чтобы отметиться"
SCAN_EN = "Point your phone camera at the QR code to check in"
VERIFY_LABEL = "Проверить подлинность постера / Check this poster is genuine:"


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
