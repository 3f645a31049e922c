"""`checkin outbox ...`: counts, retries and one message, never a clear recipient."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskCliRunner

from app.models import MessageChannel, MessageStatus, OutboxMessage
from tests.app.messaging.conftest import queue


def _set(db: Any, message: OutboxMessage, status: MessageStatus, attempts: int = 0) -> None:
    message.status, message.attempts = status, attempts
    db.session.flush()


def test_status_counts_by_status_and_channel(runner: FlaskCliRunner, db: Any, now: datetime) -> None:
    queue(now, key="s1")
    queue(now, key="s2")
    _set(db, queue(now, key="s3", channel=MessageChannel.EMAIL, recipient="a@example.org"), MessageStatus.FAILED)
    result = runner.invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()[1:]]
    assert ["failed", "email", "1"] in lines and ["pending", "sms", "2"] in lines


def test_retry_failed_requeues_with_attempts_reset(runner: FlaskCliRunner, db: Any, now: datetime) -> None:
    old = queue(now - timedelta(days=3), key="f-old")
    new = queue(now, key="f-new")
    doubt = queue(now, key="f-doubt")
    _set(db, old, MessageStatus.FAILED, 8)
    _set(db, new, MessageStatus.FAILED, 8)
    _set(db, doubt, MessageStatus.UNCONFIRMED, 1)
    since = (now - timedelta(days=1)).date().isoformat()
    result = runner.invoke(args=["outbox", "retry-failed", "--since", since])
    assert result.exit_code == 0 and "queued 1 message(s)" in result.output
    db.session.expire_all()
    assert (new.status, new.attempts) == (MessageStatus.PENDING, 0)
    assert old.status is MessageStatus.FAILED and doubt.status is MessageStatus.UNCONFIRMED
    result = runner.invoke(args=["outbox", "retry-failed", "--unconfirmed"])
    assert "queued 2 message(s)" in result.output
    db.session.expire_all()
    assert old.status is doubt.status is MessageStatus.PENDING


def test_retry_failed_refuses_a_bad_date(runner: FlaskCliRunner, db: Any) -> None:
    result = runner.invoke(args=["outbox", "retry-failed", "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO date" in result.output


def test_show_masks_the_recipient(runner: FlaskCliRunner, db: Any, now: datetime) -> None:
    message = queue(now, key="show", recipient="+79169876543", body="Сдайте тест")
    result = runner.invoke(args=["outbox", "show", str(message.id)])
    assert result.exit_code == 0, result.output
    assert "+7916***6543" in result.output and "+79169876543" not in result.output
    assert "Сдайте тест" in result.output and "pending" in result.output
    email = queue(now, key="show-mail", channel=MessageChannel.EMAIL, recipient="anna@example.org")
    output = runner.invoke(args=["outbox", "show", str(email.id)]).output
    assert "a***@example.org" in output and "anna@" not in output


def test_show_unknown_message_is_a_clean_error(runner: FlaskCliRunner, db: Any) -> None:
    result = runner.invoke(args=["outbox", "show", "987654321"])
    assert result.exit_code == 1 and "no outbox message with id 987654321" in result.output
