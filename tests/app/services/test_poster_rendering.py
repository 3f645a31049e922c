"""Posters render in every format, scan with a real QR decoder and survive hostile venue names."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from xml.etree import ElementTree

import cairosvg
import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image

from app.services.poster_rendering import (
    MARGIN_PT,
    PosterContent,
    PosterRenderingError,
    build_qr,
    clean_text,
    dark_runs,
    layout_poster,
    render_batch_zip,
    render_pdf,
    render_png,
    render_svg,
    text_width,
)

URL = "https://checkin.example.org/p/Zm9vYmFyYmF6cXV4LTAxMjM0NTY3ODktQWJDZEVmR2hJaktsTW5PcA"
SVG_NS = "{http://www.w3.org/2000/svg}"
CM = 72 / 2.54


def poster(venue_name: str = "Кафе «Пушкинъ»", url: str = URL, **changes: object) -> PosterContent:
    fields: dict[str, object] = {
        "url": url,
        "venue_name": venue_name,
        "entrance_name": "Вход со двора",
        "short_code": "123456789",
        "sms_number": "7377",
        "verify_url": "https://checkin.example.org/verify/Zm9vYmFyYmF6cXV4",
    }
    fields.update(changes)
    return PosterContent(**fields)  # type: ignore[arg-type]


@contextmanager
def opened_pdf(data: bytes) -> Iterator[pdfium.PdfDocument]:
    document = pdfium.PdfDocument(data)
    try:
        yield document
    finally:
        document.close()


def page_raster(document: pdfium.PdfDocument, index: int = 0) -> Image.Image:
    return document[index].render(scale=2).to_pil()  # 144 dpi, about what a phone camera resolves


def page_text(document: pdfium.PdfDocument, index: int = 0) -> str:
    return document[index].get_textpage().get_text_range()


def decoded(image: Image.Image) -> list[str]:
    return [c.text for c in zxingcpp.read_barcodes(image) if c.format == zxingcpp.BarcodeFormat.QRCode]


def svg_raster(svg: str) -> Image.Image:
    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=1240)
    return Image.open(io.BytesIO(png))


def svg_texts(svg: str) -> list[str]:
    root = ElementTree.fromstring(svg)
    return [element.text or "" for element in root.iter(f"{SVG_NS}text")]


def unwrapped(lines: list[str]) -> str:
    """Text with the line breaks and spaces gone, to find a name that wrapped."""
    return "".join("".join(lines).split())


def squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def cyrillic_pdf() -> bytes:
    return render_pdf([poster()])


def test_pdf_qr_decodes_to_the_poster_url(cyrillic_pdf: bytes) -> None:
    with opened_pdf(cyrillic_pdf) as document:
        assert decoded(page_raster(document)) == [URL]


def test_pdf_text_carries_cyrillic_venue_and_both_instructions(cyrillic_pdf: bytes) -> None:
    with opened_pdf(cyrillic_pdf) as document:
        text = page_text(document)
    assert "Кафе «Пушкинъ»" in text
    assert "Вход со двора" in text
    assert "Отправьте SMS с кодом 123456789 на номер 7377" in text
    assert "Text 123456789 to 7377" in text
    assert "Наведите камеру телефона на QR-код, чтобы отметиться" in text
    assert "Point your phone camera at the QR code to check in" in text


def test_pdf_embeds_the_truetype_font(cyrillic_pdf: bytes) -> None:
    assert b"/FontFile2" in cyrillic_pdf
    assert b"/Helvetica" not in cyrillic_pdf


def test_a4_qr_symbol_is_at_least_twelve_centimetres() -> None:
    layout = layout_poster(poster())
    modules = len(build_qr(URL).get_matrix())
    assert layout.qr_size * (modules - 8) / modules >= 12 * CM


def test_a5_pdf_has_a5_pages_and_a_scannable_qr() -> None:
    with opened_pdf(render_pdf([poster()], page_size="A5")) as document:
        width, height = document[0].get_size()
        assert (round(width), round(height)) == (420, 595)
        assert decoded(page_raster(document)) == [URL]
        assert "Кафе «Пушкинъ»" in page_text(document)


def test_batch_pdf_has_one_page_per_poster_and_reports_progress() -> None:
    urls = [f"{URL}{index}" for index in range(3)]
    calls: list[tuple[int, int]] = []
    data = render_pdf(
        [poster(f"Площадка {i}", url) for i, url in enumerate(urls)],
        progress=lambda done, total: calls.append((done, total)),
    )
    with opened_pdf(data) as document:
        assert len(document) == 3
        assert [decoded(page_raster(document, i)) for i in range(3)] == [[url] for url in urls]
        assert "Площадка 2" in page_text(document, 2)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_png_qr_decodes_to_the_url_and_records_its_dpi() -> None:
    image = Image.open(io.BytesIO(render_png(poster(), dpi=150)))
    assert image.size == (1240, 1754)
    assert round(image.info["dpi"][0]) == 150
    assert decoded(image) == [URL]


def test_svg_rasterised_by_cairosvg_decodes_to_the_url() -> None:
    svg = render_svg(poster())
    assert decoded(svg_raster(svg)) == [URL]
    assert "Кафе «Пушкинъ»" in svg_texts(svg)


HOSTILE = '<script>alert("x")</script> & "Бар" \'<!-- ]]>'


def test_svg_escapes_markup_in_venue_names() -> None:
    svg = render_svg(poster(HOSTILE, entrance_name="</text><script>1</script>"))
    root = ElementTree.fromstring(svg)  # raises if escaping broke the document
    assert not list(root.iter(f"{SVG_NS}script"))
    assert squeezed(HOSTILE) in unwrapped(svg_texts(svg))
    assert root.findtext(f"{SVG_NS}title") == HOSTILE


def test_control_and_bidi_override_characters_are_dropped() -> None:
    assert clean_text("Ка\u202eфе\x00\x1b  \n\tБар\ufe0f\ud800") == "Кафе Бар"
    assert clean_text("Кафе\nБар\u2028У\tдома") == "Кафе Бар У дома"
    ElementTree.fromstring(render_svg(poster("Bar\x00\x0c\u202e")))


@pytest.mark.parametrize(
    "venue_name",
    [
        "Государственное бюджетное учреждение культуры города Москвы " * 6,
        "Ы" * 300,
        "https://example.org/" + "a" * 500,
    ],
    ids=["many-words", "one-huge-word", "url-like"],
)
@pytest.mark.parametrize("page_size", ["A4", "A5"])
def test_long_names_wrap_inside_margins_and_leave_the_qr_clear(venue_name: str, page_size: str) -> None:
    layout = layout_poster(poster(venue_name, entrance_name=venue_name), page_size)  # type: ignore[arg-type]
    scale = layout.width / 595.2755905511812
    usable = layout.width - 2 * MARGIN_PT * scale
    for line in layout.lines:
        assert text_width(line.text, line.weight, line.size) <= usable
        is_above = line.y <= layout.qr_y
        assert is_above or line.y - line.size >= layout.qr_y + layout.qr_size
        assert line.y <= layout.height - MARGIN_PT * scale
    titles = [line for line in layout.lines if line.weight == "bold" and line.y < layout.qr_y]
    assert len(titles) == 3
    assert titles[-1].text.endswith("…")
    assert layout.qr_size >= 13 * CM * scale


def test_glyphs_missing_from_the_font_render_as_replacement_characters() -> None:
    name = "劇場 😀 Кафе"
    with opened_pdf(render_pdf([poster(name)])) as document:
        assert "\ufffd\ufffd \ufffd Кафе" in page_text(document)
        assert decoded(page_raster(document)) == [URL]
    assert decoded(Image.open(io.BytesIO(render_png(poster(name))))) == [URL]
    assert name in svg_texts(render_svg(poster(name)))  # viewers with a CJK/emoji font show them


def test_right_to_left_names_render_in_every_format() -> None:
    content = poster("מסעדה שלום مطعم السلام", entrance_name="כניסה ב")
    with opened_pdf(render_pdf([content])) as document:
        assert decoded(page_raster(document)) == [URL]
    assert decoded(Image.open(io.BytesIO(render_png(content)))) == [URL]
    assert squeezed("מסעדה שלום مطعم السلام") in unwrapped(svg_texts(render_svg(content)))


def test_zip_names_are_ascii_slugs_whatever_the_venue_name() -> None:
    names = ["../../etc/passwd", "C:\\Windows\\system32", "Кафе «Пушкинъ»", "", "..", "劇場"]
    calls: list[tuple[int, int]] = []
    data = render_batch_zip(
        [poster(name, entrance_name=None) for name in names],
        progress=lambda done, total: calls.append((done, total)),
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = archive.namelist()
    assert files == [
        "0001-etc-passwd.pdf",
        "0002-c-windows-system32.pdf",
        "0003-kafe-pushkin.pdf",
        "0004-poster.pdf",
        "0005-poster.pdf",
        "0006-poster.pdf",
    ]
    assert calls == [(i, 6) for i in range(1, 7)]


def test_zip_holds_every_requested_format_for_every_poster() -> None:
    posters = [poster("Театр", entrance_name="Зал 1"), poster("Театр", entrance_name="Зал 2")]
    with zipfile.ZipFile(io.BytesIO(render_batch_zip(posters, formats=("pdf", "png", "svg")))) as zf:
        assert sorted(zf.namelist()) == [f"000{i}-teatr-zal-{i}.{ext}" for i in (1, 2) for ext in ("pdf", "png", "svg")]
        assert zf.read("0001-teatr-zal-1.pdf").startswith(b"%PDF-")
        assert zf.read("0002-teatr-zal-2.png").startswith(b"\x89PNG\r\n\x1a\n")
        assert "Зал 2" in svg_texts(zf.read("0002-teatr-zal-2.svg").decode())


def test_url_that_cannot_fit_a_qr_code_is_refused() -> None:
    with pytest.raises(PosterRenderingError, match="does not fit"):
        render_pdf([poster(url="https://example.org/" + "x" * 3000)])
    with pytest.raises(PosterRenderingError, match="empty"):
        render_svg(poster(url=""))


def test_unknown_formats_empty_batches_and_absurd_dpi_are_refused() -> None:
    with pytest.raises(PosterRenderingError):
        render_batch_zip([poster()], formats=("pdf", "exe"))  # type: ignore[arg-type]
    with pytest.raises(PosterRenderingError):
        render_pdf([])
    with pytest.raises(PosterRenderingError, match="dpi"):
        render_png(poster(), dpi=20_000)


def test_dark_runs_merge_neighbouring_modules_per_row() -> None:
    matrix = [[True, True, False, True], [False, False, False, False], [False, True, True, True]]
    assert list(dark_runs(matrix)) == [(0, 0, 2), (0, 3, 1), (2, 1, 3)]
