"""Annulment and the notices of one visit across several cases: withdrawn, retracted, issued again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select

from app.models import Case, MessageKind, MessageStatus, Notice, NoticeKind, OutboxMessage
from app.services import cases, notices, outbox
from app.services.exposures import match_case, rules_from_config
from tests import factories as f
from tests.app.officials.helpers import make_official

BASE = "http://checkin.test"


def _matched_case(app: Flask, person: Any, now: datetime) -> Case:
    case = f.case(person, now, now)
    match_case(case.id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("Europe/Moscow"))
    return case


def _messages(person: Any) -> list[tuple[str, str]]:
    f.db.session.expire_all()
    rows = f.db.session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == person.id))
    return sorted((m.kind.value, m.status.value) for m in rows)


def _deliver_all(person: Any) -> None:
    f.db.session.execute(
        OutboxMessage.__table__.update()
        .where(OutboxMessage.person_id == person.id)
        .values(status=MessageStatus.DELIVERED.value)
    )


def _exposure_notice(person: Any) -> Notice:
    f.db.session.expire_all()
    return f.db.session.scalars(
        select(Notice).where(Notice.person_id == person.id, Notice.kind == NoticeKind.EXPOSURE)
    ).one()


def _three_at_one_visit(now: datetime) -> tuple[Any, Any, Any]:
    venue = f.venue()
    people = f.person(), f.person(), f.person()
    for who in people:
        f.checkin(who, venue, now - timedelta(hours=6))
    return people


def test_a_notice_retracted_with_its_case_is_issued_again_when_another_case_at_that_visit_is_approved(
    app: Flask, db: Any, now: datetime
) -> None:
    wrong, real, contact = _three_at_one_visit(now)
    official = make_official(now)
    case_a = _matched_case(app, wrong, now)
    notices.approve_case(case_a.id, official, now=now, public_base_url=BASE)
    _deliver_all(contact)
    cases.annul_case(case_a.id, reason="lab mix-up", official_id=official.id, now=now, public_base_url=BASE)
    assert _messages(contact) == [("notice", "delivered"), ("retraction", "pending")]

    # A real case at the same visit, an hour later: the person must be told again, not left at "ignore it";
    # the retraction not sent yet (night, say) would now say the opposite, so it is cancelled.
    later = now + timedelta(hours=1)
    case_b = _matched_case(app, real, later)
    notices.approve_case(case_b.id, official, now=later, public_base_url=BASE)
    assert _messages(contact) == [("notice", "delivered"), ("notice", "pending"), ("retraction", "cancelled")]
    notice = _exposure_notice(contact)
    assert notice.retracted_at is None and notice.created_at == later and notice.read_at is None
    assert notices.queue_pending_notices(now=later, public_base_url=BASE) == 0  # issued once, not per run

    # And if that case is annulled too, a second retraction goes out (its own message, not deduplicated away).
    _deliver_all(contact)
    latest = later + timedelta(hours=1)
    cases.annul_case(case_b.id, reason="lab mix-up", official_id=official.id, now=latest, public_base_url=BASE)
    assert _messages(contact).count(("retraction", "pending")) == 1
    assert _exposure_notice(contact).retracted_at == latest
    retraction = db.session.scalars(
        select(Notice).where(Notice.person_id == contact.id, Notice.kind == NoticeKind.RETRACTION)
    ).one()
    assert retraction.created_at == latest


def test_annulling_the_last_case_retracts_a_notice_another_annulled_case_issued(
    app: Flask, db: Any, now: datetime
) -> None:
    # A's approval notified the contact; B exposes them too but was never approved. Annulling A keeps the
    # notice (B still exposes them); annulling B then leaves nothing behind it, so it is retracted.
    sick_a, sick_b, contact = _three_at_one_visit(now)
    official = make_official(now)
    case_a, case_b = _matched_case(app, sick_a, now), _matched_case(app, sick_b, now)
    notices.approve_case(case_a.id, official, now=now, public_base_url=BASE)
    _deliver_all(contact)
    cases.annul_case(case_a.id, reason="lab mix-up", official_id=official.id, now=now, public_base_url=BASE)
    assert _messages(contact) == [("notice", "delivered")]
    assert _exposure_notice(contact).retracted_at is None

    cases.annul_case(case_b.id, reason="lab mix-up", official_id=official.id, now=now, public_base_url=BASE)
    assert _messages(contact) == [("notice", "delivered"), ("retraction", "pending")]
    assert _exposure_notice(contact).retracted_at == now


def test_annulling_cancels_a_failed_notice_so_a_retry_cannot_send_it_and_counts_an_unconfirmed_one_as_sent(
    app: Flask, db: Any, now: datetime
) -> None:
    venue = f.venue()
    sick, failed, unconfirmed = f.person(), f.person(), f.person()
    for who in (sick, failed, unconfirmed):
        f.checkin(who, venue, now - timedelta(hours=6))
    official = make_official(now)
    case = _matched_case(app, sick, now)
    notices.approve_case(case.id, official, now=now, public_base_url=BASE)
    for who, status in ((failed, MessageStatus.FAILED), (unconfirmed, MessageStatus.UNCONFIRMED)):
        db.session.execute(
            OutboxMessage.__table__.update().where(OutboxMessage.person_id == who.id).values(status=status.value)
        )
    cases.annul_case(case.id, reason="lab mix-up", official_id=official.id, now=now, public_base_url=BASE)
    # The failed one never reached the person: cancelled, no retraction SMS. The unconfirmed one may have.
    assert _messages(failed) == [("notice", "cancelled")]
    assert _messages(unconfirmed) == [("notice", "cancelled"), ("retraction", "pending")]

    outbox.retry_failed(now + timedelta(hours=1))
    outbox.retry_failed(now + timedelta(hours=1), include_unconfirmed=True)
    db.session.expire_all()
    due = db.session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == MessageKind.NOTICE, OutboxMessage.status == MessageStatus.PENDING
        )
    ).all()
    assert due == []


def test_a_retraction_dates_the_notice_in_the_persons_zone(app: Flask, db: Any) -> None:
    from datetime import UTC

    late_evening = datetime(2026, 11, 19, 22, 30, tzinfo=UTC)  # 01:30 on 20 November in Moscow
    sick, _other, contact = _three_at_one_visit(late_evening)
    official = make_official(late_evening)
    case = _matched_case(app, sick, late_evening)
    notices.approve_case(case.id, official, now=late_evening, public_base_url=BASE)
    _deliver_all(contact)
    cases.annul_case(case.id, reason="lab mix-up", official_id=official.id, now=late_evening, public_base_url=BASE)
    retraction = db.session.scalars(
        select(Notice).where(Notice.person_id == contact.id, Notice.kind == NoticeKind.RETRACTION)
    ).one()
    assert "20.11.2026" in retraction.body_ru and "19.11.2026" not in retraction.body_ru
