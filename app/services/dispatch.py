"""The outbox dispatcher: sends committed messages through their channels.

One batch is three steps:

1. Claim (transaction 1, committed before any network call): due pending rows, lowest priority
   value first, are locked with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL (several
   dispatchers share the work without waiting on each other), SMS in the recipient's quiet hours
   are moved to the morning instead, and the rest become `sending` with `claimed_until` and our
   reference `m<id>` (which Kannel echoes back in delivery reports). Only committed rows are ever
   seen here, so a rolled-back change never sends its message.
2. Submit, with no transaction open.
3. Record (transaction 2): accepted -> `sent`; certainly not taken (refused connection, "try
   later") -> `pending` again after an exponential backoff with jitter, or `failed` once
   DISPATCH_MAX_ATTEMPTS are used; permanent (invalid number) -> `failed` at once; in doubt ->
   `unconfirmed`.

Delivery guarantee, chosen deliberately: a message is re-sent only when we know the gateway did not
take it. Where the request went out but its answer was lost (read timeout, connection dropped,
or a dispatcher that died between claim and record, whose claim then expires), the message may
already be on its way: it becomes `unconfirmed` and is not re-sent automatically (at most once).
A delivery report for its reference settles it (`delivered`/`failed`/`sent`); an operator can re-queue
the rest deliberately with `checkin outbox retry-failed --unconfirmed` (at least once, by choice).
"""

from __future__ import annotations

import logging
import random
import time as time_module
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import String, bindparam, cast, literal, or_, select, update
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.jobs import Job, unit_of_work
from app.metrics import MESSAGES
from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage, utcnow
from app.services.channels import (
    SMS_HTTP_TIMEOUT,
    Attempt,
    AttemptResult,
    Outgoing,
    build_sms_gateway,
    scrub_personal,
    send_emails,
    send_sms,
    send_to_log,
)
from app.services.notices import sending_halted
from app.services.outbox import recipient_of
from app.services.personal_data import PersonalDataError
from app.services.quiet_hours import parse_hhmm, quiet_until
from app.services.sms_gateways import SmsGateway

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
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


JOB_TIME_BUDGET_SECONDS = 50.0
# Recording a batch's answers survives this many lost database connections in a row.
RECORD_ATTEMPTS = 3
# Kept free at the end of a claim: a request in flight may still take 2 x the gateway timeout, and
# recording the answers must happen before the claim expires and the message turns `unconfirmed`.
CLAIM_MARGIN_SECONDS = 2 * SMS_HTTP_TIMEOUT + 10.0


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 500
    max_attempts: int = 8
    concurrency: int = 16
    claim_seconds: int = 120
    quiet_start: time = time(22, 0)
    quiet_end: time = time(9, 0)
    quiet_spread: timedelta = timedelta(minutes=60)
    default_timezone: str = "Europe/Moscow"

    @classmethod
    def from_config(cls, config: Any) -> DispatchSettings:
        def get(name: str) -> int:
            return int(config[name])

        return cls(
            batch_size=get("DISPATCH_BATCH_SIZE"),
            max_attempts=get("DISPATCH_MAX_ATTEMPTS"),
            concurrency=get("DISPATCH_CONCURRENCY"),
            claim_seconds=get("DISPATCH_CLAIM_SECONDS"),
            quiet_start=parse_hhmm(config["QUIET_HOURS_START"]),
            quiet_end=parse_hhmm(config["QUIET_HOURS_END"]),
            quiet_spread=timedelta(minutes=get("QUIET_HOURS_SPREAD_MINUTES")),
            default_timezone=config["DEFAULT_TIMEZONE"],
        )


@dataclass
class Channels:
    """Where claimed messages go; built once per job run so HTTP connections are kept alive."""

    config: Any
    sms_gateway: SmsGateway | None = None

    def submit(self, messages: Sequence[Outgoing], claimed_until: float | None = None) -> list[AttemptResult]:
        """Send a claimed batch; `claimed_until` (time.monotonic) is when its claim expires: SMS not
        started in time are left for a later round rather than sent while the claim lapses."""
        start_within = None if claimed_until is None else claimed_until - time_module.monotonic() - CLAIM_MARGIN_SECONDS
        results: dict[int, AttemptResult] = {}
        by_channel: dict[MessageChannel, list[Outgoing]] = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message)
        for channel, group in by_channel.items():
            if channel is MessageChannel.SMS:
                answers = send_sms(self.sms_gateway, group, start_within)
            elif channel is MessageChannel.EMAIL:
                answers = send_emails(self.config, group)
            else:
                answers = send_to_log(group)
            results.update(zip((m.id for m in group), answers, strict=True))
        return [results[m.id] for m in messages]

    def close(self) -> None:
        if self.sms_gateway is not None:
            self.sms_gateway.close()


def build_channels(config: Any) -> Channels:
    settings = DispatchSettings.from_config(config)
    return Channels(config, build_sms_gateway(config, settings.concurrency))


@dataclass
class DispatchSummary:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unconfirmed: int = 0
    deferred: int = 0  # moved to the morning by quiet hours
    recovered: int = 0  # expired claims turned unconfirmed

    def add(self, other: DispatchSummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def reference_for(message_id: int) -> str:
    return f"m{message_id}"


def notices_halted() -> bool:
    """The officials' global stop for notices and retractions (owned by app.services.notices)."""
    return sending_halted()


def backoff_delay(attempts: int, rng: random.Random) -> timedelta:
    """Exponential (30 s, 1 min, 2 min, ... up to 1 h) with jitter in [50 %, 100 %] of the step,
    so messages refused together by a gateway do not all come back in the same second."""
    step = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(attempts - 1, 0)))
    return step * (0.5 + rng.random() / 2)


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


def _claim_phase(now: datetime, settings: DispatchSettings) -> tuple[list[Outgoing], DispatchSummary]:
    """Transaction 1: recover expired claims, claim a batch, commit."""
    with unit_of_work():
        recovered = recover_expired_claims(now)
        outgoing, deferred = claim_due(now, settings, is_halted=notices_halted())
    if recovered:
        log.warning("outbox: %d expired claims are in doubt and will not be re-sent automatically", recovered)
    return outgoing, DispatchSummary(claimed=len(outgoing), deferred=deferred, recovered=recovered)


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


def dispatch_once(
    now: datetime,
    settings: DispatchSettings,
    channels: Channels,
    *,
    rng: random.Random | None = None,
) -> DispatchSummary:
    """One batch: claim and commit, submit with no transaction open, record and commit."""
    claimed_until = time_module.monotonic() + settings.claim_seconds
    outgoing, summary = _claim_phase(now, settings)
    if outgoing:
        results = channels.submit(outgoing, claimed_until)
        summary.add(_record_phase(outgoing, results, now, settings, rng or random.Random()))
    return summary


def run_dispatcher(
    app: Flask,
    *,
    clock: Callable[[], datetime] = utcnow,
    time_budget: float = JOB_TIME_BUDGET_SECONDS,
    channels: Channels | None = None,
) -> dict[str, Any]:
    """The job: batches until the due queue is empty or the time budget is spent.

    Pipelined: while one batch is being submitted (in a worker thread, the only one talking to
    the gateway), this thread records the batch before it and claims the next one, so the
    database work hides behind the network wait. Each batch keeps its own two transactions.
    """
    settings = DispatchSettings.from_config(app.config)
    own_channels = channels is None
    channels = channels or build_channels(app.config)
    rng = random.Random()
    total = DispatchSummary()
    deadline = time_module.monotonic() + time_budget
    in_flight: tuple[list[Outgoing], Future[list[AttemptResult]], datetime] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-submit") as submitter:
            while True:
                now = clock()
                claimed_until = time_module.monotonic() + settings.claim_seconds
                outgoing, claimed = _claim_phase(now, settings)
                total.add(claimed)
                submitted = submitter.submit(channels.submit, outgoing, claimed_until) if outgoing else None
                if in_flight is not None:
                    previous, future, claimed_at = in_flight
                    total.add(_record_phase(previous, future.result(), claimed_at, settings, rng))
                in_flight = (outgoing, submitted, now) if submitted is not None else None
                is_full = claimed.claimed + claimed.deferred >= settings.batch_size
                if not is_full or time_module.monotonic() > deadline:
                    break
            if in_flight is not None:
                previous, future, claimed_at = in_flight
                total.add(_record_phase(previous, future.result(), claimed_at, settings, rng))
    finally:
        if own_channels:
            channels.close()
    return {name: getattr(total, name) for name in total.__dataclass_fields__}


def _dispatch_job(app: Flask) -> dict[str, Any]:
    return run_dispatcher(app)


JOBS: list[Job] = [Job("dispatch_outbox", _dispatch_job, "interval", {"seconds": 5})]

__all__ = [
    "JOBS",
    "Channels",
    "DispatchSettings",
    "DispatchSummary",
    "backoff_delay",
    "build_channels",
    "claim_due",
    "dispatch_once",
    "notices_halted",
    "record_outcomes",
    "recover_expired_claims",
    "reference_for",
    "run_dispatcher",
]
