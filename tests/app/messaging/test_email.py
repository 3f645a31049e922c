"""E-mail through a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask

from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from app.services.dispatch import Channels, DispatchSettings, dispatch_once
from tests.app.messaging.conftest import queue
from tests.support.kannel import free_port


class Mailbox:
    """Accepts mail; `refuse` maps an address to the SMTP reply its RCPT gets."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append((list(envelope.rcpt_tos), content))
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def smtp_channels(app: Flask, port: int, host: str = "127.0.0.1") -> Channels:
    return Channels({**app.config, "SMTP_HOST": host, "SMTP_PORT": port, "SMTP_FROM": "noreply@checkin.test"})


def reload(db: Any, message: OutboxMessage) -> OutboxMessage:
    db.session.expire_all()
    row = db.session.get(OutboxMessage, message.id)
    assert row is not None
    return row


def test_utf8_email_arrives_intact(app: Flask, db: Any, now: datetime, mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    subject = "Уведомление: возможный контакт — сдайте тест"
    body = "Вы были в кафе «Ромашка» с 19:10 до 20:30.\nЧеловек с положительным тестом был там."
    message = queue(
        now, key="e1", channel=MessageChannel.EMAIL, recipient="anna@example.org", subject=subject, body=body
    )
    summary = dispatch_once(now, DispatchSettings(), smtp_channels(app, port))
    assert summary.sent == 1 and reload(db, message).status is MessageStatus.SENT
    [(recipients, raw)] = box.received
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert recipients == ["anna@example.org"]
    assert parsed["Subject"] == subject and parsed["From"] == "noreply@checkin.test"
    assert parsed.get_content().rstrip("\n") == body
    assert f"m{message.id}" in parsed["Message-ID"]


def test_refused_recipients_fail_or_retry_by_reply_code(
    app: Flask, db: Any, now: datetime, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.refuse = {"gone@example.org": "550 No such user", "busy@example.org": "451 Try again later"}
    gone = queue(now, key="e-gone", channel=MessageChannel.EMAIL, recipient="gone@example.org", body="x")
    busy = queue(now, key="e-busy", channel=MessageChannel.EMAIL, recipient="busy@example.org", body="x")
    fine = queue(now, key="e-fine", channel=MessageChannel.EMAIL, recipient="fine@example.org", body="x")
    dispatch_once(now, DispatchSettings(), smtp_channels(app, port))
    failed = reload(db, gone)
    assert failed.status is MessageStatus.FAILED and "550" in (failed.last_error or "")
    # The server's refusal names the address; it is stored masked.
    assert "gone@example.org" not in (failed.last_error or "") and "g***@example.org" in (failed.last_error or "")
    assert reload(db, busy).status is MessageStatus.PENDING
    assert reload(db, fine).status is MessageStatus.SENT
    assert [r for r, _ in box.received] == [["fine@example.org"]]


def test_unreachable_smtp_server_is_retried_later(app: Flask, db: Any, now: datetime) -> None:
    message = queue(now, key="e-down", channel=MessageChannel.EMAIL, kind=MessageKind.ALERT, recipient="a@b.org")
    dispatch_once(now, DispatchSettings(), smtp_channels(app, free_port()))
    row = reload(db, message)
    assert (row.status, row.attempts) == (MessageStatus.PENDING, 1) and "SMTP connect" in (row.last_error or "")


def test_email_without_an_smtp_host_fails_with_the_reason(app: Flask, db: Any, now: datetime) -> None:
    message = queue(now, key="e-off", channel=MessageChannel.EMAIL, recipient="a@b.org")
    dispatch_once(now, DispatchSettings(), Channels({**app.config, "SMTP_HOST": ""}))
    row = reload(db, message)
    assert row.status is MessageStatus.FAILED and "SMTP_HOST" in (row.last_error or "")
