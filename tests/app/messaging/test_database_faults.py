"""The database goes away under the dispatcher job: it fails cleanly, and the next run sends."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from app.extensions import db
from app.jobs import run_job
from app.models import MessageKind, MessageStatus, OutboxMessage, utcnow
from app.services.channels import Outgoing
from app.services.dispatch import DispatchSettings, dispatch_once, recording
from tests.app.messaging.conftest import ScriptedChannels, queue


def queued_codes(app: Flask, count: int, prefix: str) -> list[int]:
    with app.app_context():
        ids = [queue(utcnow(), key=f"{prefix}{i}", kind=MessageKind.OTP).id for i in range(count)]
        db.session.commit()
        return ids


def statuses(app: Flask, ids: Sequence[int]) -> set[MessageStatus]:
    with app.app_context():
        found = set(db.session.scalars(select(OutboxMessage.status).where(OutboxMessage.id.in_(ids))))
        db.session.rollback()
        return found


@contextmanager
def postgres_admin(app: Flask) -> Iterator[tuple[Any, str]]:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn, str(url.database)
    finally:
        engine.dispose()


def terminate_sessions(conn: Any, name: str) -> int:
    return len(
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        ).all()
    )


def test_unreachable_postgres_fails_the_job_cleanly_and_the_next_run_sends(live_app: Flask, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL); SQLite's variant is the locked-file test")
    ids = queued_codes(live_app, 3, "pg-down-")
    with postgres_admin(live_app) as (conn, name):
        conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        try:
            terminate_sessions(conn, name)
            with pytest.raises(OperationalError):
                run_job(live_app, "dispatch_outbox")
        finally:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    assert statuses(live_app, ids) == {MessageStatus.PENDING}
    assert run_job(live_app, "dispatch_outbox")["sent"] == 3
    assert statuses(live_app, ids) == {MessageStatus.SENT}


def test_connections_killed_between_claim_and_record_are_replaced(live_app: Flask, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")
    ids = queued_codes(live_app, 3, "pg-kill-")
    killed: list[int] = []

    def kill_every_session(messages: Sequence[Outgoing]) -> None:
        with postgres_admin(live_app) as (conn, name):
            killed.append(terminate_sessions(conn, name))

    channels = ScriptedChannels(live_app.config, before_submit=kill_every_session)
    with live_app.app_context():
        summary = dispatch_once(utcnow(), DispatchSettings(), channels)
    assert killed and killed[0] >= 1
    assert summary.sent == 3 and statuses(live_app, ids) == {MessageStatus.SENT}


def test_recording_retries_on_its_own_dead_connection(
    live_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording transaction's own backend dies under it: the answers are still recorded."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")
    ids = queued_codes(live_app, 3, "pg-self-")
    real = recording.record_outcomes
    calls: list[int] = []

    def dying_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            db.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return real(*args, **kwargs)

    monkeypatch.setattr(recording, "record_outcomes", dying_first)
    with live_app.app_context():
        summary = dispatch_once(utcnow(), DispatchSettings(), ScriptedChannels(live_app.config))
    assert len(calls) == 2
    assert summary.sent == 3 and statuses(live_app, ids) == {MessageStatus.SENT}


def test_recording_gives_up_after_repeated_lost_connections(live_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded: a database that keeps dropping the connection fails the job with the error."""
    ids = queued_codes(live_app, 2, "lost-")
    calls: list[int] = []

    def always_lost(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise DBAPIError(
            "UPDATE outbox_messages", None, Exception("server closed the connection"), connection_invalidated=True
        )

    monkeypatch.setattr(recording, "record_outcomes", always_lost)
    monkeypatch.setattr(recording.time_module, "sleep", lambda seconds: None)
    with live_app.app_context(), pytest.raises(DBAPIError):
        dispatch_once(utcnow(), DispatchSettings(), ScriptedChannels(live_app.config))
    assert len(calls) == recording.RECORD_ATTEMPTS
    # Still claimed, never half-recorded: the claim's expiry settles them as in doubt.
    assert statuses(live_app, ids) == {MessageStatus.SENDING}


def test_recording_does_not_retry_other_errors(live_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    queued_codes(live_app, 1, "other-")
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise DBAPIError("UPDATE outbox_messages", None, Exception("syntax error"), connection_invalidated=False)

    monkeypatch.setattr(recording, "record_outcomes", broken)
    with live_app.app_context(), pytest.raises(DBAPIError):
        dispatch_once(utcnow(), DispatchSettings(), ScriptedChannels(live_app.config))
    assert len(calls) == 1


def _hold_write_lock(path: str, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _sqlite_path(app: Flask) -> str:
    return app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")


def test_briefly_locked_sqlite_file_is_waited_out(live_app: Flask, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    ids = queued_codes(live_app, 3, "lock-")
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(_sqlite_path(live_app), 1.0, locked))
    holder.start()
    assert locked.wait(5)
    started = time.monotonic()
    result = run_job(live_app, "dispatch_outbox")
    holder.join()
    assert result["sent"] == 3 and time.monotonic() - started >= 0.5
    assert statuses(live_app, ids) == {MessageStatus.SENT}


@pytest.mark.slow
def test_sqlite_locked_past_the_busy_timeout_fails_the_job_cleanly(live_app: Flask, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    ids = queued_codes(live_app, 3, "long-lock-")
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(_sqlite_path(live_app), 17.0, locked))
    holder.start()
    assert locked.wait(5)
    with pytest.raises(OperationalError, match="locked"):
        run_job(live_app, "dispatch_outbox")
    holder.join()
    assert statuses(live_app, ids) == {MessageStatus.PENDING}
    assert run_job(live_app, "dispatch_outbox")["sent"] == 3
