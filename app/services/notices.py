"""Approval of exposures, the notices they become, the global stop switch and retractions.

One Notice per person per exposure event (their visit), however many cases overlapped it; one SMS per
notice through the outbox. While the supervisors' stop switch is on, approvals still record but no
notice is created or queued, and the dispatcher holds unsent notice and retraction messages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, and_, select, text, update
from sqlalchemy.orm import aliased

from app.errors import NotFoundError, PermissionDenied, ValidationError
from app.extensions import db
from app.models import (
    Case,
    CaseStatus,
    Exposure,
    ExposureStatus,
    MessageChannel,
    MessageKind,
    MessageStatus,
    Notice,
    NoticeKind,
    Official,
    OfficialRole,
    OutboxMessage,
    Person,
    RiskLevel,
    SystemSwitch,
)
from app.models.cases import AWAITING_NOTICE
from app.services import audit, outbox, people
from app.services.quiet_hours import zone_or_default

HALT_SWITCH = "notices_halted"
NOTIFIED_STATUSES = (MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED)
# A notice's messages that annulling its case cancels: not sent, or not known to be.
WITHDRAWABLE_STATUSES = (MessageStatus.PENDING, MessageStatus.FAILED, MessageStatus.UNCONFIRMED)

_RISK_WORDS = {"ru": {"high": "высокий", "low": "низкий"}, "en": {"high": "high", "low": "low"}}
_NOTICE_TEXT = {
    "ru": (
        "Возможный контакт с COVID-19. {reason} Риск: {risk}. Сдайте тест на COVID-19 и следите за "
        "самочувствием; при симптомах оставайтесь дома и вызовите врача. Подробнее: {inbox}"
    ),
    "en": (
        "Possible COVID-19 exposure. {reason} Risk: {risk}. Get a COVID-19 test and watch for symptoms; "
        "if you feel unwell, stay at home and call a doctor. Details: {inbox}"
    ),
}
_RETRACTION_TEXT = {
    "ru": (
        "Отмена: наше сообщение о возможном контакте с COVID-19 ({when}) было ошибочным, случай "
        "аннулирован. Ничего делать не нужно. Подробнее: {inbox}"
    ),
    "en": (
        "Correction: our message about a possible COVID-19 exposure ({when}) was sent in error; the case "
        "was annulled. You need not do anything. Details: {inbox}"
    ),
}


@dataclass(frozen=True)
class Actor:
    """Who performs an action: an official (by id) or the system's policy."""

    kind: str  # "official" or "system"
    id: int | None

    @classmethod
    def of(cls, official: Official | None) -> Actor:
        return cls("system", None) if official is None else cls("official", official.id)


# --- the stop switch -------------------------------------------------------------------------------


def inbox_of(person: Person) -> list[Notice]:
    """The person's notices, newest first (their page and the app show the same list)."""
    query = select(Notice).where(Notice.person_id == person.id).order_by(Notice.created_at.desc(), Notice.id.desc())
    return list(db.session.scalars(query))


def mark_read(person: Person, notice_id: int, now: datetime) -> Notice:
    """Mark one of the person's notices read; anyone else's is "not found" (its existence is not revealed)."""
    notice = db.session.get(Notice, notice_id)
    if notice is None or notice.person_id != person.id:
        raise NotFoundError("No such notice among yours.")
    notice.read_at = notice.read_at or now
    return notice


def sending_halted() -> bool:
    """True while the supervisors' stop switch is on: no notice or retraction message may leave."""
    return bool(db.session.scalar(select(SystemSwitch.is_on).where(SystemSwitch.name == HALT_SWITCH)))


def halt_state() -> SystemSwitch | None:
    return db.session.get(SystemSwitch, HALT_SWITCH)


def set_sending_halted(is_on: bool, official: Official, reason: str, *, now: datetime, public_base_url: str) -> int:
    """Turn the stop switch on or off (supervisors only; a reason is required).

    Turning it off queues the notices approved meanwhile; returns how many were queued.
    """
    if official.role != OfficialRole.SUPERVISOR:
        raise PermissionDenied("Only a supervisor can stop or resume sending.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why sending is being stopped or resumed.", field="reason")
    switch = db.session.get(SystemSwitch, HALT_SWITCH)
    if switch is None:
        switch = SystemSwitch(name=HALT_SWITCH)
        db.session.add(switch)
    switch.is_on = is_on
    switch.changed_at = now
    switch.changed_by_id = official.id
    switch.reason = reason[:500]
    db.session.flush()
    audit.record("official", official.id, "notices.halt" if is_on else "notices.resume", now=now, reason=reason)
    return 0 if is_on else queue_pending_notices(now=now, public_base_url=public_base_url)


# --- approval --------------------------------------------------------------------------------------


# The ids and cases of the approved exposures still waiting for their notice, read from
# ix_exposures_awaiting_notice alone: its condition literally (a parameter would keep a prepared
# statement's generic plan from using it), only columns it holds, in its order (without that, SQLite
# searched the status index and read every approved exposure).
AWAITING_NOTICE_QUERY = (
    select(Exposure.id, Exposure.case_id).where(text(AWAITING_NOTICE)).order_by(Exposure.case_id, Exposure.id)
)


def _lock_active_cases(case_ids: Iterable[int]) -> set[int]:
    """Lock FOR SHARE, in id order, those of these cases that are active, until the commit; returns their
    ids (they stay active while locked).

    Approval and queuing notices lock the cases behind the exposures they handle: approvals still run
    side by side, but annulling a case updates its row and so waits, then withdraws with their notices
    in sight (to cancel or retract them). Unlocked, an annulment could read the exposures before the
    notices were written and leave them queued for an annulled case. An annulment that commits first
    leaves its case out of the ids returned. The ids come from the exposures already read: one statement
    with a subquery over the exposures was planned as a walk over every case (1.4 s at 1.2M exposures).
    """
    ids = sorted(set(case_ids))
    active: set[int] = set()
    for first in range(0, len(ids), 1000):
        active.update(
            db.session.scalars(
                select(Case.id)
                .where(Case.id.in_(ids[first : first + 1000]), Case.status == CaseStatus.ACTIVE)
                .order_by(Case.id)
                .with_for_update(read=True)
            )
        )
    return active


def _approve(condition: ColumnElement[bool], actor: Actor, now: datetime, public_base_url: str) -> tuple[int, int]:
    new = db.session.execute(
        select(Exposure.id, Exposure.case_id).where(condition, Exposure.status == ExposureStatus.NEW)
    ).all()
    active = _lock_active_cases(case_id for _id, case_id in new)
    ids = [exposure_id for exposure_id, case_id in new if case_id in active]
    approved = 0
    for start in range(0, len(ids), 1000):
        # Counted by what this update changed: an approval running at the same moment (another official,
        # the policy job) may have taken some of these, and the audit log must not credit both.
        approved += db.session.execute(
            update(Exposure)
            .where(Exposure.id.in_(ids[start : start + 1000]), Exposure.status == ExposureStatus.NEW)
            .values(status=ExposureStatus.APPROVED, approved_at=now, approved_by_id=actor.id),
            execution_options={"synchronize_session": False},
        ).rowcount
    db.session.flush()
    db.session.expire_all()
    queued = 0 if sending_halted() else queue_pending_notices(now=now, public_base_url=public_base_url)
    return approved, queued


def approve_case(case_id: int, official: Official, *, now: datetime, public_base_url: str) -> tuple[int, int]:
    """Approve every new exposure of one case; returns (approved, notices queued)."""
    case = db.session.get(Case, case_id)
    if case is None:
        raise ValidationError("There is no such case.")
    if case.status != CaseStatus.ACTIVE:
        raise ValidationError("This case was annulled; its exposures cannot be approved.")
    approved, queued = _approve(Exposure.case_id == case_id, Actor.of(official), now, public_base_url)
    audit.record("official", official.id, "exposures.approve", now=now, target=f"case:{case_id}", case_id=case_id,
                 reason=f"{approved} approved")  # fmt: skip
    return approved, queued


def approve_venue(venue_id: int, official: Official, *, now: datetime, public_base_url: str) -> tuple[int, int]:
    """Approve every new exposure at one venue, whatever the case; returns (approved, notices queued)."""
    approved, queued = _approve(Exposure.venue_id == venue_id, Actor.of(official), now, public_base_url)
    audit.record("official", official.id, "exposures.approve", now=now, target=f"venue:{venue_id}",
                 reason=f"{approved} approved")  # fmt: skip
    return approved, queued


def approve_due(*, now: datetime, after_minutes: int, public_base_url: str) -> tuple[int, int]:
    """Policy approval: exposures still new after `after_minutes` (0 disables it)."""
    if after_minutes <= 0:
        queued = 0 if sending_halted() else queue_pending_notices(now=now, public_base_url=public_base_url)
        return 0, queued
    cutoff = now - timedelta(minutes=after_minutes)
    approved, queued = _approve(Exposure.created_at <= cutoff, Actor("system", None), now, public_base_url)
    if approved:
        audit.record("system", None, "exposures.auto_approve", now=now, reason=f"{approved} approved by policy")
    return approved, queued


# --- notices ---------------------------------------------------------------------------------------


def _strongest(exposures: Sequence[Exposure]) -> Exposure:
    return max(exposures, key=lambda e: (e.risk == RiskLevel.HIGH, e.overlap_seconds, -e.id))


def notice_texts(exposure: Exposure, public_base_url: str) -> dict[str, str]:
    """The notice in both languages: when, where, the risk and why, what to do. Never who the case was."""
    inbox = f"{public_base_url.rstrip('/')}/me"
    return {
        "ru": _NOTICE_TEXT["ru"].format(reason=exposure.reason_ru, risk=_RISK_WORDS["ru"][exposure.risk], inbox=inbox),
        "en": _NOTICE_TEXT["en"].format(reason=exposure.reason_en, risk=_RISK_WORDS["en"][exposure.risk], inbox=inbox),
    }


def _language(person: Person) -> str:
    return person.preferred_language if person.preferred_language in ("ru", "en") else "ru"


def queue_pending_notices(*, now: datetime, public_base_url: str) -> int:
    """Turn approved exposures without a notice into notices and SMS; returns how many SMS were queued.

    Exposures of the same person on the same visit (several cases) share one notice. Callers check
    the stop switch first.

    The cases behind these exposures are locked first (_lock_active_cases): an annulment waits for these
    notices and then cancels them.
    """
    waiting = db.session.execute(AWAITING_NOTICE_QUERY).all()
    active = _lock_active_cases(case_id for _id, case_id in waiting)
    ids = sorted(exposure_id for exposure_id, case_id in waiting if case_id in active)
    pending = [
        exposure
        for first in range(0, len(ids), 1000)
        for exposure in db.session.scalars(
            select(Exposure).where(Exposure.id.in_(ids[first : first + 1000])).order_by(Exposure.id)
        )
    ]
    groups: dict[tuple[int, int], list[Exposure]] = defaultdict(list)
    for exposure in pending:
        groups[(exposure.person_id, exposure.checkin_id)].append(exposure)
    queued = 0
    for (person_id, checkin_id), exposures in groups.items():
        notice = db.session.scalar(
            select(Notice).where(
                Notice.person_id == person_id, Notice.checkin_id == checkin_id, Notice.kind == NoticeKind.EXPOSURE
            )
        )
        # A notice retracted because its case was annulled is issued again when another case's exposure
        # of the same visit is approved: the person was exposed after all (one notice row per visit).
        reissued = notice is not None and notice.retracted_at is not None
        if notice is None or reissued:
            best = _strongest(exposures)
            texts = notice_texts(best, public_base_url)
            if notice is None:
                notice = Notice(person_id=person_id, checkin_id=checkin_id, kind=NoticeKind.EXPOSURE)
                db.session.add(notice)
            notice.risk, notice.body_ru, notice.body_en = best.risk.value, texts["ru"], texts["en"]
            notice.created_at, notice.read_at, notice.retracted_at = now, None, None
            db.session.flush()
            if reissued:
                _cancel_unsent_retractions(person_id, checkin_id)
            person = db.session.get(Person, person_id)
            phone = people.phone_of(person) if person is not None else None
            if person is not None and phone is not None:
                _, created = outbox.enqueue(
                    dedup_key=f"notice:{notice.id}:sms" + (f":{now.isoformat()}" if reissued else ""),
                    channel=MessageChannel.SMS,
                    kind=MessageKind.NOTICE,
                    recipient=phone,
                    body=texts[_language(person)],
                    now=now,
                    person_id=person_id,
                    recipient_timezone=person.timezone,
                    notice_id=notice.id,
                )
                queued += int(created)
        for exposure in exposures:
            exposure.notice_id = notice.id
    db.session.flush()
    return queued


def _cancel_unsent_retractions(person_id: int, checkin_id: int) -> None:
    """A retraction not sent yet (quiet hours, say) of a notice issued again would arrive after it."""
    retractions = select(Notice.id).where(
        Notice.person_id == person_id, Notice.checkin_id == checkin_id, Notice.kind == NoticeKind.RETRACTION
    )
    db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.notice_id.in_(retractions.scalar_subquery()), OutboxMessage.status == MessageStatus.PENDING
        )
        .values(status=MessageStatus.CANCELLED, last_error="superseded: the notice was issued again")
        .execution_options(synchronize_session=False)
    )


# --- annulment -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    exposures_withdrawn: int
    messages_cancelled: int
    retractions: int


def withdraw_case(case: Case, *, now: datetime, public_base_url: str) -> Withdrawal:
    """Withdraw an annulled case's exposures: cancel notice messages not yet sent, and send a
    retraction to people already notified, unless another active case still exposes them."""
    exposures = list(
        db.session.scalars(
            select(Exposure).where(Exposure.case_id == case.id, Exposure.status != ExposureStatus.WITHDRAWN)
        )
    )
    for exposure in exposures:
        exposure.status = ExposureStatus.WITHDRAWN
    db.session.flush()
    other = aliased(Exposure)
    cancelled = retractions = 0
    # The notices of the visits this case exposed, whichever case's approval issued them: a notice issued
    # for another case, since annulled, stayed because this case still exposed the person.
    notice_ids = db.session.scalars(
        select(Notice.id)
        .join(Exposure, and_(Exposure.person_id == Notice.person_id, Exposure.checkin_id == Notice.checkin_id))
        .where(Exposure.case_id == case.id, Notice.kind == NoticeKind.EXPOSURE, Notice.retracted_at.is_(None))
        .distinct()
        .order_by(Notice.id)
    ).all()
    for notice_id in notice_ids:
        notice = db.session.get(Notice, notice_id)
        if notice is None:
            continue
        still_exposed = db.session.scalar(
            select(other.id)
            .join(Case, Case.id == other.case_id)
            .where(
                other.person_id == notice.person_id,
                other.checkin_id == notice.checkin_id,
                other.status != ExposureStatus.WITHDRAWN,
                Case.status == CaseStatus.ACTIVE,
            )
            .limit(1)
        )
        if still_exposed is not None:
            continue
        messages = list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.notice_id == notice.id)))
        # Unconfirmed: the gateway may have taken it, so the person may have it.
        was_sent = any(m.status in (*NOTIFIED_STATUSES, MessageStatus.UNCONFIRMED) for m in messages)
        for message in messages:
            # Failed and unconfirmed ones too: an operator's retry must not send a withdrawn notice.
            if message.status in WITHDRAWABLE_STATUSES:
                message.status = MessageStatus.CANCELLED
                message.last_error = "withdrawn: the case was annulled"
                cancelled += 1
        notice.retracted_at = now
        retractions += _retract(notice, send_sms=was_sent, now=now, public_base_url=public_base_url)
    db.session.flush()
    return Withdrawal(len(exposures), cancelled, retractions)


def _retract(notice: Notice, *, send_sms: bool, now: datetime, public_base_url: str) -> int:
    inbox = f"{public_base_url.rstrip('/')}/me"
    person = db.session.get(Person, notice.person_id)
    # The notice's date as the person saw it: in their zone, not in UTC (a notice at 01:00 Moscow time
    # is on the previous day in UTC).
    zone = zone_or_default(person.timezone if person is not None else "", current_app.config["DEFAULT_TIMEZONE"])
    when = notice.created_at.astimezone(zone).strftime("%d.%m.%Y")
    texts = {lang: _RETRACTION_TEXT[lang].format(when=when, inbox=inbox) for lang in ("ru", "en")}
    retraction = db.session.scalar(
        select(Notice).where(
            Notice.person_id == notice.person_id,
            Notice.checkin_id == notice.checkin_id,
            Notice.kind == NoticeKind.RETRACTION,
        )
    )
    # A visit's notice can be retracted again after it was issued again (queue_pending_notices): the one
    # retraction row is brought up to date, and its new SMS gets a key of its own.
    repeated = retraction is not None
    if retraction is None:
        retraction = Notice(person_id=notice.person_id, checkin_id=notice.checkin_id, kind=NoticeKind.RETRACTION)
        db.session.add(retraction)
    retraction.risk, retraction.body_ru, retraction.body_en = notice.risk, texts["ru"], texts["en"]
    retraction.created_at, retraction.read_at = now, None
    db.session.flush()
    if not send_sms:
        return 1
    phone = people.phone_of(person) if person is not None else None
    if person is not None and phone is not None:
        outbox.enqueue(
            dedup_key=f"retraction:{notice.id}:sms" + (f":{now.isoformat()}" if repeated else ""),
            channel=MessageChannel.SMS,
            kind=MessageKind.RETRACTION,
            recipient=phone,
            body=texts[_language(person)],
            now=now,
            person_id=person.id,
            recipient_timezone=person.timezone,
            notice_id=retraction.id,
        )
    return 1
