"""End to end in headless Chromium: record a case, match, review, stop switch, approve, notice queued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.jobs import run_job
from app.models import Notice, OfficialRole, OutboxMessage, utcnow
from app.services import officials
from tests import factories as f
from tests.support.live import live_server_fixture

live = live_server_fixture()
PASSWORD = "Vaccinate-Early-2026"


def test_an_official_records_a_case_and_approves_its_exposures_in_the_browser(live: Any, page: Any) -> None:
    now = utcnow()
    with live.app.app_context():
        officials.create_official("browser@health.example", PASSWORD, "Epi", OfficialRole.SUPERVISOR, True, now=now)
        venue = f.venue(name="Театр на Покровке")
        sick, other = f.person("+79161234501"), f.person("+79161234502")
        f.checkin(sick, venue, now - timedelta(hours=5))
        f.checkin(other, venue, now - timedelta(hours=5) + timedelta(minutes=20))
        other_id = other.id
        db.session.commit()

    page.goto(f"{live.url}/official/login")
    page.fill("#email", "browser@health.example")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.click("text=Record a case")
    page.fill("#phone", "+7 916 123-45-01")
    page.fill("#tested_on", now.astimezone(ZoneInfo(live.app.config["DEFAULT_TIMEZONE"])).date().isoformat())
    page.click("button:has-text('Record case')")
    # expect() waits for the page the form posted to; inner_text right after a click can read the
    # document that is being replaced.
    expect(page.locator("body")).to_contain_text("will be matched")

    assert run_job(live.app, "match_cases")["exposures"] == 1
    page.reload()
    assert page.locator("[data-testid=exposure]").count() == 1
    assert "+7916***4502" in page.inner_text("body")

    page.click("text=Exposures")
    page.fill("#reason", "checking the lab batch")
    page.click("button:has-text('Stop all sending')")
    expect(page.locator("[data-testid=halt-banner]")).to_be_visible()
    page.click("button:has-text('Approve case')")
    expect(page.locator("body")).to_contain_text("notices will go out when it resumes")
    with live.app.app_context():
        assert db.session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == other_id)).all() == []
        db.session.remove()

    page.click("text=Exposures")
    page.fill("#reason", "batch is fine")
    page.click("button:has-text('Resume sending')")
    expect(page.locator("[data-testid=halt-banner]")).to_have_count(0)
    with live.app.app_context():
        notice = db.session.scalars(select(Notice).where(Notice.person_id == other_id)).one()
        message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.notice_id == notice.id)).one()
        assert "Театр на Покровке" in notice.body_ru and message.kind.value == "notice"
        db.session.remove()
