"""The dashboard's per-day counts: calendar days where the officials are, not UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.extensions import db as _db
from app.models import Case, MessageKind, MessageStatus, OutboxMessage
from app.services import outbreak_stats
from tests import factories

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def _utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def _cases_at(*instants: datetime) -> None:
    person = factories.person()
    for at in instants:
        _db.session.add(Case(person_id=person.id, tested_on=at.date(), created_at=at))
    _db.session.flush()


def _counts(days: list[outbreak_stats.Day]) -> dict[date, int]:
    return {d.day: d.cases for d in days if d.cases}


def test_a_moscow_day_starts_at_21_00_utc(db: Any) -> None:
    # 20:59:59 UTC is still 20 November in Moscow; 21:00 UTC is already 21 November there.
    _cases_at(_utc(2026, 11, 20, 20, 59, 59), _utc(2026, 11, 20, 21, 0), _utc(2026, 11, 21, 20, 59, 59))
    days = outbreak_stats.daily(_utc(2026, 11, 21, 22, 0), days=3, tz=MOSCOW)
    assert [d.day for d in days] == [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)]
    assert _counts(days) == {date(2026, 11, 20): 1, date(2026, 11, 21): 2}


def test_the_deployments_zone_is_the_default(app: Any, db: Any) -> None:
    assert app.config["DEFAULT_TIMEZONE"] == "Europe/Moscow"
    _cases_at(_utc(2026, 11, 20, 22, 0))  # 01:00 on 21 November in Moscow
    days = outbreak_stats.daily(_utc(2026, 11, 21, 12, 0), days=2)
    assert _counts(days) == {date(2026, 11, 21): 1}


def test_a_23_hour_day_across_the_spring_change_counts_only_its_own_hours(db: Any) -> None:
    # Berlin, 29 March 2026: clocks go from 02:00 to 03:00, the day runs 28 Mar 23:00 UTC - 29 Mar 22:00 UTC.
    _cases_at(_utc(2026, 3, 28, 22, 59), _utc(2026, 3, 28, 23, 0), _utc(2026, 3, 29, 21, 59), _utc(2026, 3, 29, 22, 0))
    days = outbreak_stats.daily(_utc(2026, 3, 30, 12, 0), days=3, tz=BERLIN)
    assert _counts(days) == {date(2026, 3, 28): 1, date(2026, 3, 29): 2, date(2026, 3, 30): 1}


@pytest.mark.parametrize("days", [1, 14])
def test_older_and_later_rows_are_left_out_and_every_day_is_listed(db: Any, days: int) -> None:
    now = _utc(2026, 11, 20, 12, 0)  # 15:00 in Moscow
    first_moscow_midnight = datetime(2026, 11, 20, tzinfo=MOSCOW) - timedelta(days=days - 1)
    _cases_at(
        first_moscow_midnight - timedelta(seconds=1), first_moscow_midnight, datetime(2026, 11, 21, tzinfo=MOSCOW)
    )
    listed = outbreak_stats.daily(now, days=days, tz=MOSCOW)
    assert len(listed) == days and listed[-1].day == date(2026, 11, 20)
    assert sum(d.cases for d in listed) == 1 and listed[0].cases == 1


def test_notice_messages_are_counted_by_status_and_other_messages_not(db: Any) -> None:
    at = _utc(2026, 11, 20, 10, 0)
    statuses = [MessageStatus.SENT, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.FAILED]
    kinds = [MessageKind.NOTICE, MessageKind.RETRACTION, MessageKind.NOTICE, MessageKind.NOTICE]
    rows = [(kind, status) for kind, status in zip(kinds, statuses, strict=True)] + [
        (MessageKind.OTP, MessageStatus.SENT)
    ]
    for n, (kind, status) in enumerate(rows):
        _db.session.add(
            OutboxMessage(
                dedup_key=f"stats-{n}",
                channel="sms",
                kind=kind,
                recipient_enc=b"-",
                body="-",
                status=status,
                created_at=at,
                next_attempt_at=at,
            )
        )
    _db.session.flush()
    (day,) = outbreak_stats.daily(_utc(2026, 11, 20, 12, 0), days=1, tz=MOSCOW)
    assert (day.sent, day.delivered, day.failed) == (2, 1, 1)
