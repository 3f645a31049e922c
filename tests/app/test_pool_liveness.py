"""Pooled PostgreSQL connections are checked without a round trip: a dead one is replaced, not used."""

from __future__ import annotations

import time
from datetime import UTC

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import _postgres_alive, db
from tests.conftest import settings_for


def test_a_connection_whose_backend_was_terminated_is_replaced_before_use(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")
    app = create_app(settings_for(database_url))
    admin = create_engine(make_url(database_url), isolation_level="AUTOCOMMIT")
    try:
        with app.app_context():
            pooled_pid = db.session.scalar(text("SELECT pg_backend_pid()"))
            db.session.commit()
        assert app.test_client().get("/healthz").status_code == 200  # the pool holds that connection
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pooled_pid}).scalar()
            deadline = time.monotonic() + 10
            while conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pooled_pid}
            ).scalar():
                assert time.monotonic() < deadline, "the terminated backend did not go away"
                time.sleep(0.05)
        # Without the check, this request would run on the dead connection and answer 503.
        response = app.test_client().get("/healthz")
        assert response.status_code == 200, response.json
        with app.app_context():
            assert db.session.scalar(text("SELECT pg_backend_pid()")) != pooled_pid
            db.session.commit()
    finally:
        admin.dispose()
        with app.app_context():
            db.engine.dispose()


def test_the_check_leaves_other_drivers_alone() -> None:
    import sqlite3

    connection = sqlite3.connect(":memory:")
    try:
        _postgres_alive(connection, None, None)  # no exception, no effect
    finally:
        connection.close()


def test_sessions_run_in_utc_whatever_the_servers_default_zone(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")
    admin = create_engine(make_url(database_url), isolation_level="AUTOCOMMIT")
    name = make_url(database_url).database
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Europe/Moscow'"))
    try:
        app = create_app(settings_for(database_url))
        with app.app_context():
            zone, day, instant, jit = db.session.execute(
                text(
                    "SELECT current_setting('TimeZone'), CAST(TIMESTAMPTZ '2026-11-20 22:30:00+00' AS date), now(),"
                    " current_setting('jit')"
                )
            ).one()
            db.session.commit()
            db.engine.dispose()
        # The database's default (Moscow, where 22:30 UTC is already the 21st) does not reach the app's sessions.
        assert (zone, day.isoformat()) == ("UTC", "2026-11-20")
        assert instant.tzinfo is UTC  # psycopg's own UTC object, which Python compares without a zone lookup
        assert jit == "off"  # the server's default is on
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET TimeZone'))
        admin.dispose()
