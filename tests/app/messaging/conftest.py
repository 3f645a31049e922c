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

from app.errors import ValidationError
from app.models import MessageChannel, MessageKind, OutboxMessage
from app.services.channels import Attempt, AttemptResult, Outgoing
from app.services.dispatch import Channels
from app.services.outbox import enqueue
from tests.support.live import LiveServer, live_server_fixture

INBOUND_SECRET = "inbound-test-secret"  # what tests/conftest.py configures


@dataclass
class ScriptedChannels(Channels):
    """Records what would be sent; answers ACCEPTED unless `answer` says otherwise."""

    answer: Callable[[Outgoing], AttemptResult] = lambda m: AttemptResult(Attempt.ACCEPTED, "ok")
    sent: list[Outgoing] = field(default_factory=list)
    before_submit: Callable[[Sequence[Outgoing]], None] | None = None

    def submit(self, messages: Sequence[Outgoing], claimed_until: float | None = None) -> list[AttemptResult]:
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


# The real app serving HTTP on loopback, on a committed database (gateway callbacks land here).
messaging_live = live_server_fixture(name="messaging_live", session=True)


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
