"""Text on posters: hostile names cleaned, the bundled font loaded, text measured and wrapped."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path
from typing import Literal

from PIL import ImageFont
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

Weight = Literal["regular", "bold"]

# app/fonts, from app/services/poster_rendering/text.py.
FONT_DIR = Path(__file__).resolve().parent.parent.parent / "fonts"
_FONT_FILES: dict[Weight, str] = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}
_PDF_FONT_NAMES: dict[Weight, str] = {"regular": "PosterSans", "bold": "PosterSans-Bold"}
MAX_INPUT_CHARS = 400  # more than any layout block can show; bounds the wrapping work
REPLACEMENT_CHAR = "\ufffd"
ELLIPSIS = "\u2026"

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


@functools.lru_cache(maxsize=64)
def _pil_font(weight: Weight, size_px: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: same advance widths as the PDF measurements, no dependency on libraqm.
    return ImageFont.truetype(str(FONT_DIR / _FONT_FILES[weight]), size_px, layout_engine=ImageFont.Layout.BASIC)
