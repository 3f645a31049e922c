"""End to end in headless Chromium: sign up, create a venue, download its poster, scan the printed QR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pypdf
import pypdfium2
import zxingcpp
from sqlalchemy import select

from app.extensions import db
from app.models import Venue, utcnow
from app.services.posters import resolve_poster_token
from tests.support.live import live_server_fixture

live = live_server_fixture()

VENUE_NAME = "Кафе «Пушкинъ» на Тверском"


def test_signup_create_venue_download_poster_and_scan_it(live: Any, page: Any, tmp_path: Path) -> None:
    page.goto(f"{live.url}/operator/signup")
    page.fill("#organisation", "Рестораны «Север»")
    page.fill("#email", "chef@sever.example")
    page.fill("#password", "a long enough password")
    page.click("button[type=submit]")
    page.wait_for_url("**/operator/venues/new")

    page.fill("#name", VENUE_NAME)
    page.fill("#address", "Тверской бульвар, 26А")
    page.select_option("#kind", "restaurant")
    page.fill("#capacity", "80")
    page.click("text=Create venue")
    page.wait_for_url("**/operator/venues/*")
    assert page.locator("h1").inner_text() == VENUE_NAME
    assert page.locator(".op-chart").count() == 1

    with page.expect_download() as download_info:
        page.click("text=PDF A4")
    pdf_path = tmp_path / "poster.pdf"
    download_info.value.save_as(pdf_path)

    reader = pypdf.PdfReader(pdf_path)
    # The name is wrapped over two lines on the poster; the words and their order must survive.
    assert VENUE_NAME in " ".join(reader.pages[0].extract_text().split())

    document = pypdfium2.PdfDocument(str(pdf_path))
    try:
        image = document[0].render(scale=150 / 72).to_pil()
    finally:
        document.close()
    codes = [c for c in zxingcpp.read_barcodes(image) if c.format == zxingcpp.BarcodeFormat.QRCode]
    assert len(codes) == 1
    url = codes[0].text
    assert url.startswith(f"{live.url}/p/")

    with live.app.app_context():
        ref = resolve_poster_token(url.rsplit("/", 1)[1], utcnow())
        venue = db.session.scalars(select(Venue).where(Venue.name == VENUE_NAME)).one()
        assert (ref.venue.id, ref.entrance.id) == (venue.id, venue.entrances[0].id)
        assert ref.entrance.name == "Main entrance" and venue.capacity == 80

    # The poster's own verification page, as anyone would open it.
    page.goto(url.replace("/p/", "/verify/"))
    assert "genuine and current" in page.content()
