"""Fixtures for the messaging tests: scripted channels, a committed database with a live server."""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from flask import Flask

import app.jobs  # noqa: F401  (the job registry imports app.services.dispatch; load it first)
from app.errors import ValidationError
from app.models import MessageChannel, MessageKind, OutboxMessage
from app.services.channels import Attempt, AttemptResult, Outgoing
from app.services.dispatch import Channels
from app.services.outbox import enqueue
from tests.support.live import LiveServer, start_live_server

INBOUND_SECRET = "inbound-test-secret"  # what tests/conftest.py configures


@dataclass
class ScriptedChannels(Channels):
    """Records what would be sent; answers ACCEPTED unless `answer` says otherwise."""

    answer: Callable[[Outgoing], AttemptResult] = lambda m: AttemptResult(Attempt.ACCEPTED, "ok")
    sent: list[Outgoing] = field(default_factory=list)
    before_submit: Callable[[Sequence[Outgoing]], None] | None = None

    def submit(self, messages: Sequence[Outgoing]) -> list[AttemptResult]:
        if self.before_submit is not None:
            self.before_submit(messages)
        self.sent.extend(messages)
        return [self.answer(m) for m in messages]


@pytest.fixture
def scripted(app: Flask) -> ScriptedChannels:
    return ScriptedChannels(app.config)


def queue(
    now: datetime,
    *,
    key: str,
    channel: MessageChannel = MessageChannel.SMS,
    kind: MessageKind = MessageKind.NOTICE,
    recipient: str = "+79161234567",
    body: str = "Сдайте тест",
    timezone: str = "Europe/Moscow",
    subject: str = "",
) -> OutboxMessage:
    message, created = enqueue(
        dedup_key=key,
        channel=channel,
        kind=kind,
        recipient=recipient,
        body=body,
        now=now,
        recipient_timezone=timezone,
        subject=subject,
    )
    assert created
    return message


def committed_database_url(base_url: str, tmp_dir: str) -> str:
    """A committed database of our own beside the transactional one (not shared with other live servers)."""
    if base_url.startswith("sqlite"):
        return f"sqlite:///{tmp_dir}/messaging.sqlite3"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"{url.database}_messaging"
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def messaging_live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app serving HTTP on loopback, on a committed database (gateway callbacks land here)."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from tests.conftest import reset_database, settings_for

    url = committed_database_url(database_url, str(tmp_path_factory.mktemp("messaging")))
    reset_database(url)
    application = create_app(settings_for(url))
    with application.app_context():
        upgrade()
    server = start_live_server(application)
    application.config["PUBLIC_BASE_URL"] = server.url
    try:
        yield server
    finally:
        server.stop()
        with application.app_context():
            db.engine.dispose()


@pytest.fixture
def live_app(messaging_live: LiveServer) -> Iterator[Flask]:
    """The live server's app with an empty outbox; tests commit what they write."""
    from sqlalchemy import delete

    from app.extensions import db

    application = messaging_live.app
    with application.app_context():
        db.session.execute(delete(OutboxMessage))
        db.session.commit()
    yield application


def scalar_status(app: Flask, message_id: int) -> Any:
    from app.extensions import db

    with app.app_context():
        return db.session.get(OutboxMessage, message_id)


class IncomingRecorder:
    """Stands in for app.services.sms_commands.handle_incoming_sms and records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, datetime, str | None]] = []
        self.changed = threading.Condition()

    def handle_incoming_sms(self, sender: str, text: str, now: datetime, *, message_id: str | None = None) -> None:
        if text == "boom":
            raise ValidationError("not a venue code")
        with self.changed:
            self.calls.append((sender, text, now, message_id))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, datetime, str | None]]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.calls) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.calls)} of {count} incoming SMS arrived")
            return list(self.calls)


def stand_in_for_sms_commands(monkeypatch: pytest.MonkeyPatch) -> IncomingRecorder:
    """Replace the visitors' SMS command handler (or provide it while that module does not exist)."""
    recorder = IncomingRecorder()
    try:
        module = importlib.import_module("app.services.sms_commands")
    except ModuleNotFoundError as exc:
        if exc.name != "app.services.sms_commands":
            raise
        module = types.ModuleType("app.services.sms_commands")
        monkeypatch.setitem(sys.modules, "app.services.sms_commands", module)
    monkeypatch.setattr(module, "handle_incoming_sms", recorder.handle_incoming_sms, raising=False)
    return recorder
