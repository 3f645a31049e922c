"""Shared fixtures: one migrated database per test session, a savepoint-isolated transaction per test.

The database is SQLite in a temporary directory unless TEST_DATABASE_URL names a PostgreSQL database
(CI runs the suite both ways). Every test runs inside an outer transaction that is rolled back, so tests
can run in any order; code under test may commit freely (commits release savepoints only).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db as _db
from app.rate_limits import side_file_url

FROZEN_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TEST_KEYS = {
    "SECRET_KEY": "test-secret-key-not-for-production",
    "DATA_ENCRYPTION_KEYS": "t1:" + base64.urlsafe_b64encode(b"k" * 32).decode(),
    "LOOKUP_HASH_KEY": base64.urlsafe_b64encode(b"h" * 32).decode(),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def reset_database(url: str) -> None:
    """Leave an empty database at `url` (PostgreSQL: a fresh public schema; SQLite: no file)."""
    if url.startswith("sqlite:///"):
        for database in (url, side_file_url(url)):  # the database and its rate-limit counters
            path = Path(database.removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def settings_for(database_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "APP_ENV": "testing",
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "text",
        "PUBLIC_BASE_URL": "http://checkin.test",
        "SMS_INBOUND_SECRET": "inbound-test-secret",
        # Flask-Limiter's limiter is one object for every app of the process, so its storage follows
        # the last app made; database:// is tested on its own in tests/app/test_rate_limits.py.
        "RATELIMIT_STORAGE_URI": "memory://",
        **TEST_KEYS,
        **extra,
    }


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    from flask_migrate import upgrade

    reset_database(database_url)
    application = create_app(settings_for(database_url))
    with application.app_context():
        upgrade()
        _db.engine.dispose()
    yield application
    with application.app_context():
        _db.engine.dispose()  # close pooled connections before the interpreter does it noisily


class _ConnectionBoundSession(FlaskSession):
    """Flask-SQLAlchemy picks its engine itself; in tests every query must use the test's connection."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any) -> Any:
        return self.bind if self.bind is not None else super().get_bind(mapper, clause, bind, **kwargs)


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    """The database, with everything this test does rolled back afterwards."""
    with app.app_context():
        connection = _db.engine.connect()
        outer = connection.begin()
        original = _db.session
        _db.session = _db._make_scoped_session(
            {"bind": connection, "join_transaction_mode": "create_savepoint", "class_": _ConnectionBoundSession}
        )
        try:
            yield _db
        finally:
            _db.session.remove()
            _db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def client(app: Flask, db: Any) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask, db: Any) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def now() -> datetime:
    """The frozen 'now' that tests pass into services."""
    return FROZEN_NOW


# Shared fixtures for browser tests; a test module opts in by naming them.
from tests.support.browser import browser, page  # noqa: E402, F401
