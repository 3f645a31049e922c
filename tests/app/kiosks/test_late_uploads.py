"""A kiosk that was offline uploads its check-ins late: cases matched meanwhile are matched again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.jobs import run_job
from app.models import Case
from app.services import exposure_jobs
from tests import factories as f
from tests.app.kiosks.conftest import EnrolledKiosk, enrol_kiosk, scanner_item
from tests.app.services.test_rematching import _case, _exposed


@pytest.fixture
def job_clock(monkeypatch: pytest.MonkeyPatch, api_now: datetime) -> list[datetime]:
    clock = [api_now]
    monkeypatch.setattr(exposure_jobs, "utcnow", lambda: clock[0])
    return clock


@pytest.fixture
def kiosk(db: Any, api_now: datetime) -> EnrolledKiosk:
    """A kiosk enrolled three days ago (it may send items from since then)."""
    enrolled = enrol_kiosk(f.venue(name="Библиотека"), api_now - timedelta(days=3))
    db.session.commit()
    return enrolled


def _visit(who: Any, venue: Any, at: datetime) -> Any:
    visit = f.checkin(who, venue, at)
    visit.created_at = at
    f.db.session.commit()
    return visit


def _send(client: FlaskClient, kiosk: EnrolledKiosk, items: list[Any], now: datetime) -> Any:
    response = client.post(
        "/api/v1/kiosk/checkins", json={"sent_at": now.isoformat(), "items": items}, headers=kiosk.headers
    )
    assert response.status_code == 200 and response.json["results"][0]["status"] == "accepted", response.json
    f.db.session.expire_all()


def test_a_kiosk_upload_of_yesterdays_checkins_reaches_the_case_matched_meanwhile(
    app: Flask, client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime, job_clock: list[datetime]
) -> None:
    sick, early_bird, elsewhere = f.person(), f.person(), f.person()
    yesterday = api_now - timedelta(hours=20)
    _visit(sick, kiosk.venue, yesterday)
    case = _case(sick, api_now - timedelta(minutes=30))
    assert run_job(app, "match_cases")["cases"] == 1
    assert _exposed(case) == []

    # The kiosk was offline: its check-in of yesterday, ten minutes after the case arrived, comes now.
    items = [scanner_item(early_bird, yesterday + timedelta(minutes=10))]
    _send(client, kiosk, items, api_now)
    assert db.session.get(Case, case.id).matched_at is None  # waiting for matching again

    result = run_job(app, "match_cases")
    assert result["cases"] == 1 and result["exposures"] == 1
    assert _exposed(case) == [early_bird.id]
    # Once is enough: the next run leaves the case alone.
    assert run_job(app, "match_cases") == {"cases": 0, "exposures": 0, "failed": 0, "matched_again": 0, "outbreaks": 0}

    # A late upload from a time the case was not there reopens nothing.
    far = scanner_item(elsewhere, yesterday - timedelta(hours=3))
    _send(client, kiosk, [far], api_now)
    assert db.session.get(Case, case.id).matched_at is not None


def test_a_kiosk_batch_of_fresh_checkins_reopens_no_case(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    sick, visitor = f.person(), f.person()
    _visit(sick, kiosk.venue, api_now - timedelta(minutes=20))
    case = _case(sick, api_now - timedelta(minutes=10))
    case.matched_at = api_now - timedelta(minutes=9)
    db.session.commit()
    items = [scanner_item(visitor, api_now - timedelta(minutes=1))]
    _send(client, kiosk, items, api_now)
    # Not late: the job's own check of stays going on covers it (next test), without a write per batch.
    assert db.session.get(Case, case.id).matched_at is not None
