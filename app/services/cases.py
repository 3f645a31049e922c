"""Positive cases: recording one (by phone number or mos.ru account), annulling one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.errors import ConflictError, NotFoundError, ValidationError
from app.extensions import db
from app.models import Case, CaseStatus, Checkin, Person
from app.services import audit, matching, notices, people

# A test result older than this cannot have visits left to match (retention) and is most likely a typo.
MAX_TEST_AGE_DAYS = 60
# An isolation date further after the test than this is a typo (9999-12-31 would not even fit a window).
MAX_ISOLATION_DAYS = 60


@dataclass(frozen=True)
class RecordedCase:
    case: Case
    person_created: bool
    visits_on_record: int


def _person_for(phone: str | None, subject: str | None, issuer: str, now: datetime) -> tuple[Person, bool]:
    phone = (phone or "").strip()
    subject = (subject or "").strip()
    if bool(phone) == bool(subject):
        raise ValidationError("Identify the person by a phone number or by a mos.ru account id (one of them).")
    if phone:
        return people.get_or_create_by_phone(people.normalise_phone(phone), now)
    if not issuer:
        raise ValidationError("mos.ru accounts are not configured here (OIDC_ISSUER is empty); use the phone number.")
    if len(subject) > 255:
        raise ValidationError("This account id is too long.", field="subject")
    return people.get_or_create_by_subject(issuer, subject, now)


def validate_dates(
    tested_on: date, symptom_onset: date | None, isolated_on: date | None, today: date, lead_days: int
) -> None:
    if tested_on > today:
        raise ValidationError("The test date is in the future.", field="tested_on")
    if tested_on < today - timedelta(days=MAX_TEST_AGE_DAYS):
        raise ValidationError(f"The test date is more than {MAX_TEST_AGE_DAYS} days ago.", field="tested_on")
    if symptom_onset is not None and symptom_onset > today:
        raise ValidationError("The symptom onset date is in the future.", field="symptom_onset")
    if symptom_onset is not None and symptom_onset < tested_on - timedelta(days=30):
        raise ValidationError(
            "Symptoms began more than 30 days before the test; check the dates.", field="symptom_onset"
        )
    if isolated_on is not None and isolated_on > tested_on + timedelta(days=MAX_ISOLATION_DAYS):
        raise ValidationError(
            f"The isolation date is more than {MAX_ISOLATION_DAYS} days after the test; check the dates.",
            field="isolated_on",
        )
    try:
        matching.infectious_window(
            tested_on, symptom_onset, isolated_on, ZoneInfo("UTC"), matching.MatchRules(lead_days=lead_days)
        )
    except ValueError:
        raise ValidationError(
            "The isolation date is before the infectious period starts; check the dates.", field="isolated_on"
        ) from None


def record_case(
    *,
    tested_on: date,
    now: datetime,
    lead_days: int,
    issuer: str = "",
    phone: str | None = None,
    subject: str | None = None,
    symptom_onset: date | None = None,
    isolated_on: date | None = None,
    lab_reference: str | None = None,
    official_id: int | None = None,
    actor_kind: str = "official",
    tz: ZoneInfo | None = None,
) -> RecordedCase:
    """Record a positive case; the matching job picks it up. A person unknown here is created (they
    simply have no visits on record). A lab reference seen before is refused (ConflictError).

    Dates are calendar days where the case lives (``tz``, by default DEFAULT_TIMEZONE), the days the
    matcher turns into the infectious window: "today" is today there, not in UTC, so a test taken
    this morning in Moscow can be recorded at 01:00 Moscow time."""
    zone = tz if tz is not None else ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    validate_dates(tested_on, symptom_onset, isolated_on, now.astimezone(zone).date(), lead_days)
    lab_reference = (lab_reference or "").strip() or None
    if lab_reference is not None:
        if len(lab_reference) > 100:
            raise ValidationError("The lab reference is longer than 100 characters.", field="lab_reference")
        if _lab_reference_taken(lab_reference):
            raise ConflictError("A case with this lab reference is already recorded.", field="lab_reference")
    person, created = _person_for(phone, subject, issuer, now)
    case = Case(
        person_id=person.id,
        tested_on=tested_on,
        symptom_onset=symptom_onset,
        isolated_on=isolated_on,
        lab_reference=lab_reference,
        recorded_by_id=official_id,
        created_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(case)
    except IntegrityError:
        # The same result recorded at the same moment (a form sent twice, one file imported by two
        # officials) is refused like one recorded earlier.
        if lab_reference is None or not _lab_reference_taken(lab_reference):
            raise
        raise ConflictError("A case with this lab reference is already recorded.", field="lab_reference") from None
    audit.record(actor_kind, official_id, "case.record", now=now, subject_person_id=person.id, case_id=case.id)
    visits = db.session.scalar(select(func.count()).select_from(Checkin).where(Checkin.person_id == person.id)) or 0
    return RecordedCase(case, created, int(visits))


def _lab_reference_taken(lab_reference: str) -> bool:
    return db.session.scalar(select(Case.id).where(Case.lab_reference == lab_reference)) is not None


def get_case(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None:
        raise NotFoundError("There is no such case.")
    return case


def annul_case(
    case_id: int, *, reason: str, official_id: int, now: datetime, public_base_url: str
) -> notices.Withdrawal:
    """Annul a case recorded in error: withdraw its exposures, cancel unsent notices and retract the
    ones already sent (unless another active case still exposes the same visit)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the case is annulled.", field="reason")
    case = get_case(case_id)
    if case.status == CaseStatus.ANNULLED:
        raise ConflictError("This case is already annulled.")
    case.status = CaseStatus.ANNULLED
    case.annulled_at = now
    case.annul_reason = reason[:500]
    db.session.flush()
    withdrawal = notices.withdraw_case(case, now=now, public_base_url=public_base_url)
    _recount_outbreaks(case, now)
    audit.record("official", official_id, "case.annul", now=now, subject_person_id=case.person_id,
                 case_id=case.id, reason=reason)  # fmt: skip
    return withdrawal


def _recount_outbreaks(case: Case, now: datetime) -> None:
    """The venue outbreaks the annulled case counted in, recounted without it (removed below the rule)."""
    from app.services.exposures import case_stays, record_outbreaks, rules_from_config

    if case.window_starts_at is None or case.window_ends_at is None:
        return  # never matched: it counted nowhere
    window = (case.window_starts_at, case.window_ends_at)
    venues = {stay.venue_id for stay in case_stays(case.person_id, window, now)}
    if venues:
        record_outbreaks(venues, rules_from_config(current_app.config), now, prune=True)


def masked_phone_of(person: Person) -> str:
    """What an official may see without the reveal permission."""
    from app.services.personal_data import mask_phone

    phone = people.phone_of(person)
    if phone is not None:
        return mask_phone(phone)
    return "mos.ru account" if person.oidc_subject_enc is not None else "no phone"
