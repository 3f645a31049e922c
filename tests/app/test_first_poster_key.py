"""Two workers printing their first posters at once create one signing key between them (PostgreSQL;
SQLite's single writer cannot interleave them)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import PosterSigningKey, PosterVersion, utcnow
from app.services.posters import keys
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()


def test_two_workers_creating_the_first_key_create_one(live: LiveServer) -> None:
    app = live.app
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL: SQLite has one writer at a time")
        db.session.execute(delete(PosterVersion))
        db.session.execute(delete(PosterSigningKey))
        db.session.commit()
        db.session.remove()
    created = threading.Event()
    ids: dict[str, Any] = {}

    def first() -> None:
        with app.app_context():
            try:
                ids["first"] = keys.current_signing_key(utcnow()).id
                created.set()
                threading.Event().wait(0.5)  # the second worker reads no key meanwhile, and waits
                db.session.commit()
            finally:
                created.set()
                db.session.remove()

    def second() -> None:
        created.wait(10)
        with app.app_context():
            try:
                ids["second"] = keys.current_signing_key(utcnow()).id
                db.session.commit()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert ids["first"] == ids["second"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PosterSigningKey)) == 1
        db.session.remove()
