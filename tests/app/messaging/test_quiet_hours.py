"""Quiet hours across time zones, daylight-saving changes and both kinds of window."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from app.services.quiet_hours import is_quiet, quiet_until, spread_offset

NIGHT = {"start": time(22, 0), "end": time(9, 0)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # Moscow, UTC+3: 23:00 local -> 09:00 local tomorrow.
        ("Europe/Moscow", utc(2026, 11, 20, 20, 0), utc(2026, 11, 21, 6, 0)),
        ("Europe/Moscow", utc(2026, 11, 20, 12, 0), None),
        # Vladivostok, UTC+10: noon in Moscow is 22:00 there already.
        ("Asia/Vladivostok", utc(2026, 11, 20, 12, 0), utc(2026, 11, 20, 23, 0)),
        ("Asia/Vladivostok", utc(2026, 11, 20, 22, 59), utc(2026, 11, 20, 23, 0)),
        ("Asia/Vladivostok", utc(2026, 11, 20, 23, 0), None),
        # Kaliningrad, UTC+2: 08:30 local is still night.
        ("Europe/Kaliningrad", utc(2026, 11, 20, 6, 30), utc(2026, 11, 20, 7, 0)),
        ("Europe/Kaliningrad", utc(2026, 11, 20, 19, 59), None),
        ("Europe/Kaliningrad", utc(2026, 11, 20, 20, 0), utc(2026, 11, 21, 7, 0)),
        # New York, UTC-5 in November: 07:00 local when it is noon in London.
        ("America/New_York", utc(2026, 11, 20, 12, 0), utc(2026, 11, 20, 14, 0)),
        ("America/New_York", utc(2026, 11, 21, 3, 0), utc(2026, 11, 21, 14, 0)),
        ("America/New_York", utc(2026, 11, 20, 14, 0), None),
    ],
)
def test_night_in_the_recipients_zone_waits_for_local_morning(
    zone: str, now: datetime, expected: datetime | None
) -> None:
    assert quiet_until(now, zone, **NIGHT) == expected


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # Berlin springs forward in the night of 28/29 March: 09:00 CEST is 07:00 UTC, not 08:00.
        ("Europe/Berlin", utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 7, 0)),
        # ... and falls back in the night of 24/25 October: 09:00 CET is 08:00 UTC.
        ("Europe/Berlin", utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 8, 0)),
        # New York: 22:00 EST on 7 March, morning is 09:00 EDT on the 8th = 13:00 UTC.
        ("America/New_York", utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 13, 0)),
        # 22:30 EDT on 31 October, morning is 09:00 EST on 1 November = 14:00 UTC.
        ("America/New_York", utc(2026, 11, 1, 2, 30), utc(2026, 11, 1, 14, 0)),
        # In the repeated hour itself (01:30 EST, the second time round) it is still night.
        ("America/New_York", utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 14, 0)),
    ],
)
def test_daylight_saving_change_overnight_keeps_the_local_morning(zone: str, now: datetime, expected: datetime) -> None:
    assert quiet_until(now, zone, **NIGHT) == expected


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 59), True),
        (time(0, 0), True),
        (time(8, 59), True),
        (time(9, 0), False),
        (time(12, 0), False),
    ],
)
def test_window_crossing_midnight_includes_start_excludes_end(local: time, quiet: bool) -> None:
    assert is_quiet(local, time(22, 0), time(9, 0)) is quiet


@pytest.mark.parametrize(
    ("local", "quiet"),
    [(time(0, 59), False), (time(1, 0), True), (time(5, 59), True), (time(6, 0), False), (time(23, 0), False)],
)
def test_window_within_one_day(local: time, quiet: bool) -> None:
    assert is_quiet(local, time(1, 0), time(6, 0)) is quiet


def test_window_within_one_day_ends_the_same_morning() -> None:
    # 02:00 in Moscow is 23:00 UTC the day before.
    now = utc(2026, 11, 19, 23, 0)
    assert quiet_until(now, "Europe/Moscow", start=time(1, 0), end=time(6, 0)) == utc(2026, 11, 20, 3, 0)
    assert quiet_until(utc(2026, 11, 19, 21, 30), "Europe/Moscow", start=time(1, 0), end=time(6, 0)) is None


def test_equal_start_and_end_means_no_quiet_hours() -> None:
    assert quiet_until(utc(2026, 11, 20, 23, 0), "Europe/Moscow", start=time(0, 0), end=time(0, 0)) is None


def test_unknown_zone_falls_back_to_the_default_zone() -> None:
    now = utc(2026, 11, 20, 20, 0)  # 23:00 in Moscow, 15:00 in New York
    assert quiet_until(now, "Mars/Olympus", **NIGHT) == utc(2026, 11, 21, 6, 0)
    assert quiet_until(now, "", default_timezone="America/New_York", **NIGHT) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        quiet_until(datetime(2026, 11, 20, 20, 0), "Europe/Moscow", **NIGHT)


def test_morning_is_spread_over_the_window_deterministically() -> None:
    now, spread = utc(2026, 11, 20, 20, 0), timedelta(minutes=60)
    mornings = [quiet_until(now, "Europe/Moscow", message_id=i, spread=spread, **NIGHT) for i in range(1, 3001)]
    assert mornings == [quiet_until(now, "Europe/Moscow", message_id=i, spread=spread, **NIGHT) for i in range(1, 3001)]
    start = utc(2026, 11, 21, 6, 0)
    offsets = [m - start for m in mornings if m is not None]
    assert all(timedelta(0) <= o < spread for o in offsets)
    per_minute = Counter(int(o.total_seconds() // 60) for o in offsets)
    # 3,000 messages over 60 minutes: every minute gets some, none gets a burst (mean 50).
    assert len(per_minute) == 60 and max(per_minute.values()) < 90
    # Consecutive ids (one exposure batch) do not leave together.
    assert len({spread_offset(i, spread) for i in range(100, 110)}) == 10


def test_zero_spread_sends_at_the_end_of_the_window() -> None:
    assert spread_offset(12345, timedelta(0)) == timedelta(0)


def test_a_notice_waits_for_morning_in_the_deployments_zone(app: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nobody tells us a visitor's zone: a Novosibirsk deployment's visitors are in Novosibirsk, not Moscow.
    from zoneinfo import ZoneInfo

    from app.models import Case, OfficialRole
    from app.services import notices, officials
    from app.services.dispatch import DispatchSettings, claim_due
    from app.services.exposures import match_case, rules_from_config
    from tests import factories as f

    monkeypatch.setitem(app.config, "DEFAULT_TIMEZONE", "Asia/Novosibirsk")
    now = utc(2026, 11, 20, 9, 0)
    venue = f.venue(timezone="Asia/Novosibirsk")
    sick, other = f.person(), f.person()
    assert other.timezone == "Asia/Novosibirsk"
    for who in (sick, other):
        f.checkin(who, venue, now - timedelta(hours=6))
    case = Case(person_id=sick.id, tested_on=now.date(), created_at=now)
    db.session.add(case)
    db.session.flush()
    match_case(case.id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("Asia/Novosibirsk"))
    official = officials.create_official(
        "nsk@health.example", "Vaccinate-Early-2026", "Epi", OfficialRole.SUPERVISOR, True, now=now
    )
    notices.approve_case(case.id, official, now=now, public_base_url="http://checkin.test")
    settings = DispatchSettings.from_config(app.config)
    night = utc(2026, 11, 20, 16, 30)  # 23:30 in Novosibirsk, 19:30 in Moscow
    assert [
        len(found) if isinstance(found, list) else found for found in claim_due(night, settings, is_halted=False)
    ] == [0, 1]
    morning = utc(2026, 11, 21, 3, 0)  # 10:00 in Novosibirsk
    claimed, _deferred = claim_due(morning, settings, is_halted=False)
    assert len(claimed) == 1
