"""The demo data behind `make run`: loads once, prints working check-in pages, and loads again safely."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from app.models import Organisation, Venue


def test_demo_load_is_idempotent_and_prints_check_in_pages(runner: FlaskCliRunner, db: Any) -> None:
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output
    assert first.output.count("check-in page: http://checkin.test/p/") == 3
    second = runner.invoke(args=["demo", "load"])
    assert "Demo data already present." in second.output
    assert db.session.scalar(select(func.count()).select_from(Organisation)) == 1
    assert db.session.scalar(select(func.count()).select_from(Venue)) == 3


def test_demo_check_in_page_opens(runner: FlaskCliRunner, client: Any, db: Any) -> None:
    output = runner.invoke(args=["demo", "load"]).output
    url = next(line.split("check-in page: ")[1] for line in output.splitlines() if "check-in page:" in line)
    page = client.get(url.removeprefix("http://checkin.test"))
    assert page.status_code == 200
    assert "Кофейня «Ромашка» на Тверской" in page.get_data(as_text=True)
