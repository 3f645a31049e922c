"""Transaction 1: expired claims recovered, and due messages claimed under quiet hours and the stop switch."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, literal, select, update

from app.extensions import db
from app.jobs import unit_of_work
from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from app.services.channels import Outgoing
from app.services.dispatch.settings import DispatchSettings, DispatchSummary
from app.services.notices import sending_halted
from app.services.outbox import recipient_of
from app.services.personal_data import PersonalDataError
from app.services.quiet_hours import quiet_until

# The logger name the dispatcher's lines had when it was one module, kept for log filters.
log = logging.getLogger("app.services.dispatch")

# Held, not attempted, while officials have stopped all sending of notices.
HELD_WHEN_HALTED = (MessageKind.NOTICE, MessageKind.RETRACTION)
# A visitor waiting in a doorway for a sign-in code must get it at any hour.
QUIET_HOURS_EXEMPT = frozenset({MessageKind.OTP})
# So must the answer to a text the person has just sent (an SMS check-in's "you are checked in"): they
# are waiting for it, and held until 09:00 it would be no answer at all. Only while fresh: one that an
# outage kept back for longer waits for the morning like any other message.
ANSWERS_EXEMPT_WHILE = timedelta(minutes=15)


def _exempt_from_quiet_hours(kind: MessageKind, created_at: datetime, now: datetime) -> bool:
    if kind in QUIET_HOURS_EXEMPT:
        return True
    return kind is MessageKind.CONFIRMATION and now - created_at <= ANSWERS_EXEMPT_WHILE


def reference_for(message_id: int) -> str:
    return f"m{message_id}"


def notices_halted() -> bool:
    """The officials' global stop for notices and retractions (owned by app.services.notices)."""
    return sending_halted()


def recover_expired_claims(now: datetime) -> int:
    """Claims whose dispatcher never recorded an outcome (it died): in doubt, so not re-sent."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == MessageStatus.SENDING, OutboxMessage.claimed_until < now)
        .values(
            status=MessageStatus.UNCONFIRMED,
            claimed_until=None,
            last_error="in doubt: the dispatcher stopped before recording the gateway's answer",
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def claim_due(now: datetime, settings: DispatchSettings, *, is_halted: bool) -> tuple[list[Outgoing], int]:
    """Claim up to batch_size due messages (flush only); returns them decrypted, and how many
    were moved to the morning by quiet hours instead."""
    query = (
        select(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.kind,
            OutboxMessage.recipient_timezone,
            OutboxMessage.created_at,
        )
        .where(OutboxMessage.status == MessageStatus.PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at)  # exactly ix_outbox_messages_due
        .limit(settings.batch_size)
        # PostgreSQL: rows another dispatcher holds are skipped, not waited for. SQLite has one
        # writer at a time; a concurrent claim fails with "database is locked" and runs again.
        .with_for_update(skip_locked=True)
    )
    if is_halted:
        query = query.where(OutboxMessage.kind.not_in(HELD_WHEN_HALTED))
    deferred: list[dict[str, Any]] = []
    to_claim: list[int] = []
    for row in db.session.execute(query):
        if row.channel is MessageChannel.SMS and not _exempt_from_quiet_hours(row.kind, row.created_at, now):
            morning = quiet_until(
                now,
                row.recipient_timezone,
                start=settings.quiet_start,
                end=settings.quiet_end,
                default_timezone=settings.default_timezone,
                message_id=row.id,
                spread=settings.quiet_spread,
            )
            if morning is not None:
                deferred.append({"b_id": row.id, "b_next": morning})
                continue
        to_claim.append(row.id)
    if deferred:
        table = OutboxMessage.__table__
        db.session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(next_attempt_at=bindparam("b_next")),
            deferred,
        )
    if not to_claim:
        return [], len(deferred)
    claimed_ids = db.session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(to_claim), OutboxMessage.status == MessageStatus.PENDING)
        .values(
            status=MessageStatus.SENDING,
            claimed_until=now + timedelta(seconds=settings.claim_seconds),
            attempts=OutboxMessage.attempts + 1,
            gateway_ref=literal("m").concat(cast(OutboxMessage.id, String)),
        )
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    rows = db.session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.recipient_enc,
            OutboxMessage.subject,
            OutboxMessage.body,
        )
        .where(OutboxMessage.id.in_(claimed_ids))
        .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
    ).all()
    outgoing: list[Outgoing] = []
    unreadable: list[dict[str, Any]] = []
    for row in rows:
        try:
            recipient = recipient_of(row)  # type: ignore[arg-type]
        except PersonalDataError as exc:
            # One unreadable row (a removed key, a process without the sealed-mode private key)
            # must not block the queue behind it: it fails with the reason, for an operator to retry.
            unreadable.append({"b_id": row.id, "b_error": f"recipient cannot be decrypted: {exc}"[:500]})
            continue
        outgoing.append(Outgoing(row.id, row.channel, recipient, row.subject, row.body, reference_for(row.id)))
    if unreadable:
        log.error("outbox: %d message(s) failed: recipient cannot be decrypted", len(unreadable))
        table = OutboxMessage.__table__
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(status=MessageStatus.FAILED.value, claimed_until=None, last_error=bindparam("b_error")),
            unreadable,
        )
    return outgoing, len(deferred)


def _claim_phase(now: datetime, settings: DispatchSettings) -> tuple[list[Outgoing], DispatchSummary]:
    """Transaction 1: recover expired claims, claim a batch, commit."""
    with unit_of_work():
        recovered = recover_expired_claims(now)
        outgoing, deferred = claim_due(now, settings, is_halted=notices_halted())
    if recovered:
        log.warning("outbox: %d expired claims are in doubt and will not be re-sent automatically", recovered)
    return outgoing, DispatchSummary(claimed=len(outgoing), deferred=deferred, recovered=recovered)
