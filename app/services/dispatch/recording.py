"""Transaction 2: the gateway's answers recorded as statuses, retried over lost database connections."""

from __future__ import annotations

import logging
import random
import time as time_module
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.jobs import unit_of_work
from app.metrics import MESSAGES
from app.models import MessageStatus, OutboxMessage
from app.services.channels import Attempt, AttemptResult, Outgoing, scrub_personal
from app.services.dispatch.settings import DispatchSettings, DispatchSummary

# The logger name the dispatcher's lines had when it was one module, kept for log filters.
log = logging.getLogger("app.services.dispatch")

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Recording a batch's answers survives this many lost database connections in a row.
RECORD_ATTEMPTS = 3


def backoff_delay(attempts: int, rng: random.Random) -> timedelta:
    """Exponential (30 s, 1 min, 2 min, ... up to 1 h) with jitter in [50 %, 100 %] of the step,
    so messages refused together by a gateway do not all come back in the same second."""
    step = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(attempts - 1, 0)))
    return step * (0.5 + rng.random() / 2)


def record_outcomes(
    messages: Sequence[Outgoing],
    results: Sequence[AttemptResult],
    now: datetime,
    settings: DispatchSettings,
    rng: random.Random,
) -> DispatchSummary:
    """Turn each answer into a status (flush only).

    Only rows still ours are touched: a delivery report may already have arrived for a message
    (it can come back within milliseconds, before this runs), and it wins.
    """
    summary = DispatchSummary()
    table = OutboxMessage.__table__
    in_flight = (MessageStatus.SENDING.value, MessageStatus.UNCONFIRMED.value)
    ids = [m.id for m in messages]
    query = select(OutboxMessage.id, OutboxMessage.attempts).where(OutboxMessage.id.in_(ids))
    attempts = {row.id: row.attempts for row in db.session.execute(query)}
    accepted: list[int] = []
    updates: list[dict[str, Any]] = []
    for message, result in zip(messages, results, strict=True):
        MESSAGES.labels(message.channel.value, result.attempt.value).inc()
        if result.attempt is Attempt.ACCEPTED:
            accepted.append(message.id)
            summary.sent += 1
            continue
        detail = scrub_personal(result.detail)
        row: dict[str, Any] = {"b_id": message.id, "b_next": None, "b_error": detail[:500]}
        used = attempts.get(message.id, settings.max_attempts)
        if result.attempt is Attempt.RETRY and used < settings.max_attempts:
            row.update(b_status=MessageStatus.PENDING.value, b_next=now + backoff_delay(used, rng))
            summary.retried += 1
        elif result.attempt is Attempt.IN_DOUBT:
            row.update(b_status=MessageStatus.UNCONFIRMED.value, b_error=f"in doubt: {detail}"[:500])
            summary.unconfirmed += 1
        else:
            if result.attempt is Attempt.RETRY:
                row["b_error"] = f"gave up after {used} attempts: {detail}"[:500]
            row.update(b_status=MessageStatus.FAILED.value)
            summary.failed += 1
        updates.append(row)
    if accepted:
        db.session.execute(update(table).where(table.c.id.in_(accepted), table.c.sent_at.is_(None)).values(sent_at=now))
        db.session.execute(
            update(table)
            .where(table.c.id.in_(accepted), table.c.status.in_(in_flight))
            .values(status=MessageStatus.SENT.value, claimed_until=None, last_error=None)
        )
    for status in {u["b_status"] for u in updates}:
        group = [u for u in updates if u["b_status"] == status]
        values: dict[str, Any] = {"status": status, "claimed_until": None, "last_error": bindparam("b_error")}
        if status == MessageStatus.PENDING.value:
            values["next_attempt_at"] = bindparam("b_next")
        db.session.execute(
            # No IN (...) here: an expanding parameter cannot be used in an executemany.
            update(table)
            .where(table.c.id == bindparam("b_id"), or_(*(table.c.status == s for s in in_flight)))
            .values(**values),
            [{k: v for k, v in u.items() if k != "b_status" and (k != "b_next" or v is not None)} for u in group],
        )
    return summary


def _record_phase(
    outgoing: Sequence[Outgoing],
    results: Sequence[AttemptResult],
    now: datetime,
    settings: DispatchSettings,
    rng: random.Random,
) -> DispatchSummary:
    """Transaction 2: record every answer, commit.

    The answers exist only in memory: losing them would turn messages the gateway took into
    `unconfirmed` ones when their claim expires. A connection that died while the batch was out
    (a restarted server, a terminated backend) is therefore replaced and the recording retried;
    it is idempotent, since it only touches rows still in flight.
    """
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            with unit_of_work():
                return record_outcomes(outgoing, results, now, settings, rng)
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == RECORD_ATTEMPTS:
                raise
            log.warning("outbox: the database connection was lost while recording a batch; retrying")
            time_module.sleep(0.2 * attempt)
    raise AssertionError("unreachable")
