"""A live server for browser and end-to-end tests: the real app in a thread, on its own committed database.

Tests that use it must not also use the transactional `db` fixture (they would share a session across
threads); they seed data through `live.app_context()` and commit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


@dataclass
class LiveServer:
    app: Flask
    url: str
    server: BaseWSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; under CI a missing part is a failure, not a skip."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def start_live_server(app: Flask) -> LiveServer:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    return LiveServer(app=app, url=f"http://127.0.0.1:{port}", server=server, thread=thread)


def live_database_url(base_url: str, tmp_dir: str, name: str = "live") -> str:
    """A committed database beside the transactional one, one per `name` (each module's server has its own)."""
    if base_url.startswith("sqlite"):
        return f"sqlite:///{tmp_dir}/{name}.sqlite3"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    live_name = f"{url.database}_{name}"[:63]
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{live_name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{live_name}"'))
    engine.dispose()
    return url.set(database=live_name).render_as_string(hide_password=False)


def live_server_fixture(*, name: str = "live", session: bool = False, **settings: Any) -> Any:
    """A live server on a database of its own (PUBLIC_BASE_URL is its own address): one per test module,
    or with `session=True` one per test run, registered as fixture `name`."""

    @pytest.fixture(scope="session" if session else "module", name=name)
    def live(
        database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
    ) -> Iterator[LiveServer]:
        from flask_migrate import upgrade

        from app import create_app
        from app.extensions import db
        from tests.conftest import reset_database, settings_for

        owner = name if session else f"live_{request.module.__name__.rsplit('.', 1)[-1].lower()}"
        url = live_database_url(database_url, str(tmp_path_factory.mktemp("live")), name=owner)
        reset_database(url)
        app = create_app(settings_for(url, **settings))
        with app.app_context():
            upgrade()
        server = start_live_server(app)
        app.config["PUBLIC_BASE_URL"] = server.url
        try:
            yield server
        finally:
            server.stop()
            with app.app_context():
                db.engine.dispose()

    return live
