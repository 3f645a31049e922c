"""The durable outbox: every outgoing message is a row written in the caller's transaction.

Nothing leaves here directly. The dispatcher job (app/services/dispatch.py) sends committed rows
afterwards, so a rolled-back change can never have sent its message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import MessageChannel, MessageKind, OutboxMessage
from app.services.personal_data import keyring

# One-time codes go first: a visitor is standing in a doorway waiting for one.
PRIORITY = {
    MessageKind.OTP: 0,
    MessageKind.CONFIRMATION: 3,
    MessageKind.RETRACTION: 4,
    MessageKind.NOTICE: 5,
    MessageKind.ALERT: 6,
}
RECIPIENT_CONTEXT = "recipient"


def enqueue(
    *,
    dedup_key: str,
    channel: MessageChannel,
    kind: MessageKind,
    recipient: str,
    body: str,
    now: datetime,
    person_id: int | None = None,
    recipient_timezone: str = "Europe/Moscow",
    subject: str = "",
    notice_id: int | None = None,
) -> tuple[OutboxMessage, bool]:
    """Add a message unless one with the same dedup key exists; returns (message, created).

    The dedup key is unique in the schema, so two transactions racing to queue the same message
    still produce one row: the loser's insert fails inside its savepoint and it gets the winner's row.
    """
    existing = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
    if existing is not None:
        return existing, False
    message = OutboxMessage(
        dedup_key=dedup_key,
        channel=channel,
        kind=kind,
        person_id=person_id,
        recipient_enc=keyring().encrypt(recipient, context=RECIPIENT_CONTEXT),
        recipient_timezone=recipient_timezone,
        subject=subject,
        body=body,
        priority=PRIORITY[kind],
        next_attempt_at=now,
        created_at=now,
        notice_id=notice_id,
    )
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        winner = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
        if winner is None:
            raise
        return winner, False
    return message, True


def recipient_of(message: OutboxMessage) -> str:
    """The decrypted address; only the dispatcher (and tests) need it."""
    return keyring().decrypt(message.recipient_enc, context=RECIPIENT_CONTEXT)
