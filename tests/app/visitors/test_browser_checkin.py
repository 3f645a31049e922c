"""One end-to-end flow in headless Chromium on a live server, starting from a real printed poster."""

from __future__ import annotations

import re
from typing import Any

import pypdfium2 as pdfium
import zxingcpp
from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import Checkin, CheckoutReason, MessageKind, OutboxMessage, utcnow
from app.services import outbox, posters
from app.services.poster_rendering import PosterContent, render_pdf
from tests import factories
from tests.support.live import LiveServer

PHONE = "+79169300001"


def url_from_printed_poster(venue: Any) -> str:
    """Issue a poster, render its PDF, and read the URL back from the QR code like a phone camera would."""
    _, token = posters.issue_poster(venue.entrances[0], utcnow())
    content = PosterContent(
        url=posters.poster_url(token),
        venue_name=venue.name,
        entrance_name=venue.entrances[0].name,
        short_code=venue.short_code,
        sms_number="7377",
        verify_url=None,
    )
    document = pdfium.PdfDocument(render_pdf([content]))
    try:
        image = document[0].render(scale=2).to_pil()
    finally:
        document.close()
    # Only QR codes: the big printed digits can pass for a linear barcode to the decoder.
    [barcode] = [c for c in zxingcpp.read_barcodes(image) if c.format == zxingcpp.BarcodeFormat.QRCode]
    return barcode.text


def code_sent_to(live: LiveServer, phone: str) -> str:
    with live.app.app_context():
        for message in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())):
            if message.kind == MessageKind.OTP and outbox.recipient_of(message) == phone:
                return re.search(r"\b(\d{6})\b", message.body).group(1)  # type: ignore[union-attr]
    raise AssertionError("no code went out")


def test_visitor_checks_in_from_a_printed_poster_continues_moves_on_and_checks_out(live: LiveServer, page: Any) -> None:
    with live.app.app_context():
        org = factories.organisation("Browser test organisation")
        cafe = factories.venue(org, name="Кафе «Браузер»")
        theatre = factories.venue(org, name="Театр «Браузер»")
        cafe_url, theatre_url = url_from_printed_poster(cafe), url_from_printed_poster(theatre)
        cafe_id, theatre_id = cafe.id, theatre.id
        db.session.commit()
    assert cafe_url.startswith(live.url + "/p/")

    page.goto(cafe_url)
    assert "Кафе «Браузер»" in page.inner_text("h1")
    page.fill("#phone", "8 916 930-00-01")
    page.click("text=Получить код по SMS")
    page.fill("#code", code_sent_to(live, PHONE))
    page.select_option("#party_size", "2")
    page.click("#confirm")
    expect(page.locator("h1")).to_have_text("Вы отмечены")
    expect(page.locator("#venue")).to_contain_text("Кафе «Браузер»")
    assert page.is_visible("#planned") and page.is_visible("#check-out")

    page.goto(cafe_url)  # scanning again: one tap, and the visit continues
    page.click("#check-in")
    expect(page.locator("h1")).to_have_text("Вы уже отмечены здесь")

    page.goto(theatre_url)
    page.click("#check-in")
    expect(page.locator("h1")).to_have_text("Вы отмечены")
    expect(page.locator("#ended-previous")).to_contain_text("Кафе «Браузер»")

    page.click("#check-out")
    expect(page.locator("h1")).to_have_text("Посещение завершено")

    with live.app.app_context():
        visits = db.session.scalars(
            select(Checkin).where(Checkin.venue_id.in_([cafe_id, theatre_id])).order_by(Checkin.id)
        ).all()
        assert [v.venue_id for v in visits] == [cafe_id, theatre_id]
        assert visits[0].party_size == 2
        assert visits[0].checkout_reason == CheckoutReason.NEXT_CHECKIN
        assert visits[1].checkout_reason == CheckoutReason.VISITOR
        assert all(v.checked_out_at is not None for v in visits)
