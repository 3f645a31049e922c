"""The request is the transaction: success commits everything, any failure commits nothing."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg.errors
import pytest
import sqlalchemy.exc
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.errors import ValidationError
from app.extensions import db
from app.models import Organisation
from tests.conftest import settings_for


@pytest.fixture
def app_with_routes(database_url: str, db: Any) -> Flask:
    application = create_app(settings_for(database_url, WTF_CSRF_ENABLED=False))
    sessions: list[bool] = []
    application.config["sessions_seen"] = sessions

    @application.post("/t/ok")
    def ok() -> str:
        db.session.add(Organisation(name="committed"))
        db.session.flush()
        return "ok"

    @application.post("/t/pending")
    def pending() -> str:
        db.session.add(Organisation(name="never flushed"))  # the commit flushes it
        return "ok"

    @application.post("/t/no-database")
    def no_database() -> str:
        return "ok"

    @application.teardown_appcontext
    def _seen(_exc: BaseException | None) -> None:  # runs before Flask-SQLAlchemy removes the session
        sessions.append(db.session.registry.has())

    @application.post("/t/refused")
    def refused() -> str:
        db.session.add(Organisation(name="first half"))
        db.session.flush()
        raise ValidationError("second half refused")

    @application.post("/t/crash")
    def crash() -> str:
        db.session.add(Organisation(name="first half"))
        db.session.flush()
        raise RuntimeError("boom")

    @application.post("/t/deadlock")
    def deadlock() -> str:
        db.session.add(Organisation(name="first half"))
        db.session.flush()
        # As the driver raises it when PostgreSQL picks this transaction to break a deadlock.
        raise sqlalchemy.exc.OperationalError("UPDATE ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))

    @application.post("/t/locked")
    def locked() -> str:
        db.session.add(Organisation(name="first half"))
        db.session.flush()
        raise sqlalchemy.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))

    return application


def _count(name: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Organisation).where(Organisation.name == name))


def test_successful_request_commits(app_with_routes: Flask) -> None:
    assert app_with_routes.test_client().post("/t/ok").status_code == 200
    with app_with_routes.app_context():
        assert _count("committed") == 1


def test_objects_added_but_never_flushed_are_committed(app_with_routes: Flask) -> None:
    assert app_with_routes.test_client().post("/t/pending").status_code == 200
    with app_with_routes.app_context():
        assert _count("never flushed") == 1


def test_a_request_that_never_uses_the_database_opens_no_session(app_with_routes: Flask) -> None:
    response = app_with_routes.test_client().post("/t/no-database")
    assert response.status_code == 200 and response.text == "ok"
    assert app_with_routes.config["sessions_seen"] == [False]


def test_refused_request_leaves_nothing_half_written(app_with_routes: Flask) -> None:
    response = app_with_routes.test_client().post("/t/refused", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "second half refused"
    with app_with_routes.app_context():
        assert _count("first half") == 0


def test_crashing_request_rolls_back_and_shows_no_traceback(app_with_routes: Flask) -> None:
    import logging

    logging.getLogger("app.errors").disabled = True  # the traceback goes to the log, which we silence here
    try:
        response = app_with_routes.test_client().post("/t/crash", headers={"Accept": "text/html"})
    finally:
        logging.getLogger("app.errors").disabled = False
    assert response.status_code == 500
    assert b"Traceback" not in response.data and b"boom" not in response.data
    with app_with_routes.app_context():
        assert _count("first half") == 0


@pytest.mark.parametrize("route", ["/t/deadlock", "/t/locked"])
def test_a_lost_race_in_the_database_is_a_busy_answer_not_a_crash(app_with_routes: Flask, route: str) -> None:
    response = app_with_routes.test_client().post(route, headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "The service is busy; please try again in a moment."
    with app_with_routes.app_context():
        assert _count("first half") == 0


def test_a_nul_character_in_the_query_string_or_a_form_is_refused(app_with_routes: Flask) -> None:
    client = app_with_routes.test_client()
    for response in (
        client.post("/t/ok?name=a%00b", headers={"Accept": "application/json"}),
        client.post("/t/ok", data={"name": "a\x00b"}, headers={"Accept": "application/json"}),
    ):
        assert response.status_code == 400
        assert response.get_json()["error"] == "A field contains a NUL character."
    # A JSON body is not a form: its strings are checked by the views that read them.
    assert client.post("/t/ok", json={"name": "a\x00b"}).status_code == 200
    with app_with_routes.app_context():
        assert _count("committed") == 1
