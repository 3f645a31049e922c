"""Retention purge with a frozen clock: nothing older survives, nothing younger is touched."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app.models import (
    AuditEntry,
    Checkin,
    Exposure,
    LoginCode,
    MessageChannel,
    MessageKind,
    Notice,
    NoticeKind,
    OutboxMessage,
    Person,
    PersonalCodeKey,
    RiskLevel,
)
from app.services.retention import TARGETS, purge_batch
from tests import factories


def _purge_all(app: Flask, now: datetime, batch: int = 2) -> dict[str, int]:
    totals = {}
    for target in TARGETS:
        total = 0
        while (n := purge_batch(target, now, app.config, batch)) > 0:
            total += n
            assert n <= batch
        totals[target.name] = total
    return totals


def _seed(db: Any, at: datetime, tag: str) -> dict[str, Any]:
    venue = factories.venue(name=f"venue {tag}")
    who = factories.person()
    who.created_at = at
    who.last_seen_at = at
    other = factories.person()
    other.created_at = at
    visit = factories.checkin(who, venue, at, minutes=30)
    contact = factories.checkin(other, venue, at, minutes=30)
    case = factories.case(who, at, at)
    notice = Notice(
        person_id=other.id,
        checkin_id=contact.id,
        kind=NoticeKind.EXPOSURE,
        risk="high",
        body_ru="…",
        body_en="…",
        created_at=at,
    )
    db.session.add(notice)
    db.session.flush()
    db.session.add_all(
        [
            Exposure(
                case_id=case.id,
                case_checkin_id=visit.id,
                checkin_id=contact.id,
                person_id=other.id,
                venue_id=venue.id,
                risk=RiskLevel.HIGH,
                overlap_seconds=1800,
                reason_en="r",
                reason_ru="r",
                created_at=at,
                notice_id=notice.id,
            ),
            OutboxMessage(
                dedup_key=f"n-{tag}",
                channel=MessageChannel.SMS,
                kind=MessageKind.NOTICE,
                person_id=other.id,
                recipient_enc=b"x",
                body="b",
                created_at=at,
                next_attempt_at=at,
            ),
            LoginCode(phone_hash=b"p" * 32, code_hash=b"c" * 32, created_at=at, expires_at=at + timedelta(minutes=5)),
            AuditEntry(at=at, actor_kind="system", action="test"),
        ]
    )
    db.session.flush()
    return {"visit": visit.id, "contact": contact.id, "other": other.id, "who": who.id}


def _count(db: Any, model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_purge_removes_everything_past_retention_and_keeps_everything_younger(
    app: Flask, db: Any, now: datetime
) -> None:
    old = _seed(db, now - timedelta(days=21, seconds=1), "old")
    young = _seed(db, now - timedelta(days=20, hours=23), "young")
    totals = _purge_all(app, now)
    assert totals["checkins"] == 2 and totals["exposures"] == 1 and totals["notices"] == 1
    assert totals["outbox_messages"] == 1 and totals["login_codes"] == 1
    remaining_visits = set(db.session.scalars(select(Checkin.id)))
    assert remaining_visits == {young["visit"], young["contact"]}
    assert _count(db, Exposure) == 1 and _count(db, Notice) == 1 and _count(db, OutboxMessage) == 1
    assert _count(db, LoginCode) == 1
    # The old contact had nothing left: gone. The old case's person stays while the case exists.
    people = set(db.session.scalars(select(Person.id)))
    assert old["other"] not in people and old["who"] in people
    assert {young["other"], young["who"]} <= people
    # Audit entries live a year.
    assert _count(db, AuditEntry) == 2
    assert _purge_all(app, now) == {t.name: 0 for t in TARGETS}


def test_audit_entries_older_than_a_year_are_purged(app: Flask, db: Any, now: datetime) -> None:
    db.session.add_all(
        [
            AuditEntry(at=now - timedelta(days=366), actor_kind="system", action="old"),
            AuditEntry(at=now - timedelta(days=364), actor_kind="system", action="young"),
        ]
    )
    db.session.flush()
    _purge_all(app, now)
    assert list(db.session.scalars(select(AuditEntry.action))) == ["young"]


def test_keys_revoked_longer_ago_than_retention_are_purged_and_current_ones_kept(
    app: Flask, db: Any, now: datetime
) -> None:
    who = factories.person()
    for purpose in ("ble", "qr"):
        for age in (timedelta(days=21, seconds=1), timedelta(days=20, hours=23)):  # past retention, within
            db.session.add(
                PersonalCodeKey(
                    person_id=who.id,
                    purpose=purpose,
                    key_enc=b"k",
                    created_at=now - timedelta(days=60),
                    revoked_at=now - age,
                )
            )
        # The current key is as old as any, and never revoked: it stays.
        db.session.add(
            PersonalCodeKey(person_id=who.id, purpose=purpose, key_enc=b"k", created_at=now - timedelta(days=60))
        )
    db.session.flush()
    assert _purge_all(app, now)["personal_code_keys"] == 2
    kept = db.session.execute(select(PersonalCodeKey.purpose, PersonalCodeKey.revoked_at)).all()
    assert sorted((p, r is None) for p, r in kept) == [("ble", False), ("ble", True), ("qr", False), ("qr", True)]


def test_a_companion_stays_while_a_visit_they_came_to_is_kept(app: Flask, db: Any, now: datetime) -> None:
    """A companion's "last seen" is written at most once an hour: it can be older than the visit they came
    to. They stay, and stay linked to it, until that visit goes."""
    from app.models import Companion

    venue = factories.venue()
    host = factories.person()
    companion = factories.person()
    seen = now - timedelta(days=21, minutes=30)  # marked seen at an earlier check-in, within the hour
    companion.created_at = companion.last_seen_at = seen
    visit = factories.checkin(host, venue, now - timedelta(days=20, hours=23, minutes=45), minutes=30)
    db.session.add(Companion(checkin_id=visit.id, person_id=companion.id))
    db.session.flush()
    companion_id, visit_id = companion.id, visit.id
    _purge_all(app, now)
    db.session.expire_all()
    assert db.session.get(Person, companion_id) is not None
    assert db.session.scalars(select(Companion.person_id).where(Companion.checkin_id == visit_id)).all() == [
        companion_id
    ]
    # Once the visit is past retention, both go.
    _purge_all(app, now + timedelta(minutes=16))
    db.session.expire_all()
    assert db.session.get(Person, companion_id) is None
