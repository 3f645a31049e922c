"""Recording a case: its dates are calendar days where the case lives, checked before anything is written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.errors import ValidationError
from app.models import Case, Person
from app.services import cases

# 22:30 UTC on 20 November is 01:30 on 21 November in Moscow (UTC+3 all year).
LATE_EVENING_UTC = datetime(2026, 11, 20, 22, 30, tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")


def _count(db: Any, model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def test_todays_test_in_moscow_is_accepted_after_moscow_midnight_while_utc_is_still_yesterday(db: Any) -> None:
    recorded = cases.record_case(phone="+79165550101", tested_on=date(2026, 11, 21), now=LATE_EVENING_UTC, lead_days=2)
    assert recorded.case.tested_on == date(2026, 11, 21)


def test_the_default_zone_is_the_deployments(app: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.config["DEFAULT_TIMEZONE"] == "Europe/Moscow"
    monkeypatch.setitem(app.config, "DEFAULT_TIMEZONE", "UTC")
    with pytest.raises(ValidationError, match="in the future"):
        cases.record_case(phone="+79165550101", tested_on=date(2026, 11, 21), now=LATE_EVENING_UTC, lead_days=2)


@pytest.mark.parametrize(
    ("dates", "field", "message"),
    [
        ({"tested_on": date(2026, 11, 22)}, "tested_on", "The test date is in the future."),
        ({"tested_on": date(2026, 9, 21)}, "tested_on", "The test date is more than 60 days ago."),
        ({"tested_on": date(2026, 11, 20), "symptom_onset": date(2026, 11, 22)}, "symptom_onset", "in the future"),
        ({"tested_on": date(2026, 11, 20), "symptom_onset": date(2026, 10, 1)}, "symptom_onset", "more than 30 days"),
        ({"tested_on": date(2026, 11, 20), "isolated_on": date(2026, 11, 10)}, "isolated_on", "before the infectious"),
        ({"tested_on": date(2026, 11, 20), "isolated_on": date(2027, 1, 20)}, "isolated_on", "more than 60 days after"),
        (
            {"tested_on": date(2026, 11, 20), "isolated_on": date(9999, 12, 31)},
            "isolated_on",
            "more than 60 days after",
        ),
    ],
)
def test_impossible_dates_are_refused_with_the_field_and_nothing_is_written(
    db: Any, dates: dict[str, date], field: str, message: str
) -> None:
    people_before, cases_before = _count(db, Person), _count(db, Case)
    with pytest.raises(ValidationError, match=message) as refused:
        cases.record_case(phone="+79165550101", now=LATE_EVENING_UTC, lead_days=2, tz=MOSCOW, **dates)
    assert refused.value.field == field
    assert (_count(db, Person), _count(db, Case)) == (people_before, cases_before)


def test_the_latest_accepted_isolation_date_is_sixty_days_after_the_test(db: Any) -> None:
    latest = date(2026, 11, 20) + timedelta(days=cases.MAX_ISOLATION_DAYS)
    recorded = cases.record_case(
        phone="+79165550101", tested_on=date(2026, 11, 20), isolated_on=latest, now=LATE_EVENING_UTC, lead_days=2
    )
    assert recorded.case.isolated_on == latest


def test_an_absurd_isolation_date_in_a_lab_file_is_a_row_error_and_the_other_rows_stand(db: Any) -> None:
    from app.services import case_imports

    text = (
        "lab_reference,phone,tested_on,symptom_onset,isolated_on\n"
        "R-1,+79165550201,2026-11-19,,\n"
        "R-2,+79165550202,2026-11-19,,9999-12-31\n"
        "R-3,+79165550203,2026-11-19,,\n"
    )
    result = case_imports.import_cases(text, now=LATE_EVENING_UTC, lead_days=2, issuer="")
    assert result.created == 2 and [line for line, _message in result.errors] == [3]
    assert "more than 60 days after" in result.errors[0][1]


def test_the_oldest_accepted_test_date_is_sixty_local_days_back(db: Any) -> None:
    oldest = date(2026, 11, 21) - timedelta(days=cases.MAX_TEST_AGE_DAYS)
    recorded = cases.record_case(phone="+79165550101", tested_on=oldest, now=LATE_EVENING_UTC, lead_days=2, tz=MOSCOW)
    assert recorded.case.tested_on == oldest
