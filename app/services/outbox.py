"""The durable outbox: every outgoing message is a row written in the caller's transaction.

Nothing leaves here directly. The dispatcher job (app/services/dispatch/) sends committed rows
afterwards, so a rolled-back change can never have sent its message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import NotFoundError
from app.extensions import db
from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from app.services.channels import mask_recipient, scrub_personal
from app.services.people import phone_lookup
from app.services.personal_data import keyring
from app.services.sms_gateways import DeliveryReport, DeliveryStatus

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
        recipient_hash=phone_lookup(recipient) if channel == MessageChannel.SMS else None,
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


# -- delivery reports ------------------------------------------------------------------------------

# A report may come before the dispatcher has recorded its own outcome, or for a message left in
# doubt; it settles the status either way. Final statuses are never reopened.
# Built once: Kannel may post hundreds of reports per second, and a prebuilt Core statement skips
# the ORM's per-call statement construction (about half the cost of a report).
_outbox = OutboxMessage.__table__
_REPORTABLE = (MessageStatus.SENDING.value, MessageStatus.SENT.value, MessageStatus.UNCONFIRMED.value)
_BY_REFERENCE = _outbox.c.gateway_ref == bindparam("ref")
_ON_DELIVERED = (
    update(_outbox)
    .where(_BY_REFERENCE, _outbox.c.status.in_(_REPORTABLE))
    .values(status=MessageStatus.DELIVERED.value, delivered_at=bindparam("at", type_=_outbox.c.delivered_at.type))
)
_ON_FAILED = (
    update(_outbox)
    .where(_BY_REFERENCE, _outbox.c.status.in_(_REPORTABLE))
    .values(status=MessageStatus.FAILED.value, last_error=bindparam("error"))
)
# Buffered or accepted by the SMSC: it has left us, whatever the dispatcher saw.
_ON_ACCEPTED = (
    update(_outbox)
    .where(_BY_REFERENCE, _outbox.c.status.in_((MessageStatus.SENDING.value, MessageStatus.UNCONFIRMED.value)))
    .values(status=MessageStatus.SENT.value, last_error=None)
)
_EXISTS = select(_outbox.c.id).where(_BY_REFERENCE).limit(1)


def record_delivery_report(report: DeliveryReport, now: datetime) -> bool:
    """Apply a gateway's delivery report to the message with our reference; False if unknown.

    One UPDATE in the common case; the existence check runs only when nothing changed.
    """
    if report.status is DeliveryStatus.DELIVERED:
        result = db.session.execute(_ON_DELIVERED, {"ref": report.reference, "at": now})
    elif report.status is DeliveryStatus.FAILED:
        error = f"delivery report: {scrub_personal(report.answer)}"[:500]
        result = db.session.execute(_ON_FAILED, {"ref": report.reference, "error": error})
    else:
        result = db.session.execute(_ON_ACCEPTED, {"ref": report.reference})
    if result.rowcount:
        return True
    return db.session.execute(_EXISTS, {"ref": report.reference}).first() is not None


# -- operators -------------------------------------------------------------------------------------


def status_counts() -> list[tuple[str, str, int]]:
    """(status, channel, count) for every combination present."""
    rows = db.session.execute(
        select(OutboxMessage.status, OutboxMessage.channel, func.count())
        .group_by(OutboxMessage.status, OutboxMessage.channel)
        .order_by(OutboxMessage.status, OutboxMessage.channel)
    ).all()
    return [(str(status), str(channel), int(count)) for status, channel, count in rows]


def retry_failed(now: datetime, *, since: datetime | None = None, include_unconfirmed: bool = False) -> int:
    """Put failed messages (optionally also unconfirmed ones) back in the queue, attempts reset.

    Re-queuing an unconfirmed message may send it a second time: that is the operator's choice.
    """
    statuses = [MessageStatus.FAILED] + ([MessageStatus.UNCONFIRMED] if include_unconfirmed else [])
    query = update(OutboxMessage).where(OutboxMessage.status.in_(statuses))
    if since is not None:
        query = query.where(OutboxMessage.created_at >= since)
    result = db.session.execute(
        query.values(
            status=MessageStatus.PENDING, attempts=0, next_attempt_at=now, claimed_until=None
        ).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def describe(message_id: int) -> dict[str, object]:
    """An operator's view of one message: the recipient masked, never in clear."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFoundError(f"no outbox message with id {message_id}")
    recipient = recipient_of(message)
    masked = mask_recipient(recipient)
    return {
        "id": message.id,
        "channel": str(message.channel),
        "kind": str(message.kind),
        "status": str(message.status),
        "recipient": masked,
        "recipient_timezone": message.recipient_timezone,
        "priority": message.priority,
        "attempts": message.attempts,
        "created_at": message.created_at.isoformat(),
        "next_attempt_at": message.next_attempt_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else "",
        "delivered_at": message.delivered_at.isoformat() if message.delivered_at else "",
        "reference": message.gateway_ref or "",
        "last_error": message.last_error or "",
        "subject": message.subject,
        "body": message.body,
    }
