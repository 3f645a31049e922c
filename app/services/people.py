"""People: finding or creating a person by phone number or account subject, without storing either in clear."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError

from app.errors import ValidationError
from app.extensions import db
from app.models import Person
from app.services.personal_data import PersonalDataError, keyring, mask_phone

PHONE = "phone"
SUBJECT = "oidc_subject"
DEFAULT_REGION = "RU"


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """E.164 form of a phone number typed any usual way ("8 916 123-45-67" -> "+79161234567").

    Raises ValidationError with a message a visitor understands.
    """
    cleaned = (raw or "").strip()
    if not cleaned or len(cleaned) > 32:
        raise ValidationError("Enter your mobile phone number, for example +7 916 123-45-67.", field="phone")
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        raise ValidationError("This does not look like a phone number.", field="phone") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("This phone number is not valid.", field="phone")
    kind = phonenumbers.number_type(number)
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise ValidationError("Enter a mobile number that can receive SMS.", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_lookup(phone_e164: str) -> bytes:
    return keyring().lookup_hash(phone_e164, context=PHONE)


def subject_lookup(issuer: str, subject: str) -> bytes:
    return keyring().lookup_hash(f"{issuer}|{subject}", context=SUBJECT)


def find_by_phone(phone_e164: str) -> Person | None:
    return db.session.scalar(select(Person).where(Person.phone_hash == phone_lookup(phone_e164)))


def find_by_subject(issuer: str, subject: str) -> Person | None:
    return db.session.scalar(select(Person).where(Person.oidc_subject_hash == subject_lookup(issuer, subject)))


def get_or_create_by_phone(phone_e164: str, now: datetime) -> tuple[Person, bool]:
    """The person with this (already normalised) number, created if new; returns (person, created)."""
    person = find_by_phone(phone_e164)
    if person is not None:
        return person, False
    new = Person(
        phone_hash=phone_lookup(phone_e164),
        phone_enc=keyring().encrypt(phone_e164, context=PHONE),
        created_at=now,
        last_seen_at=now,
    )
    return _created_unless_raced(new, lambda: find_by_phone(phone_e164))


def get_or_create_by_subject(issuer: str, subject: str, now: datetime) -> tuple[Person, bool]:
    """The person holding this mos.ru account, created (with the account and no number) if new."""
    person = find_by_subject(issuer, subject)
    if person is not None:
        return person, False
    new = Person(created_at=now, last_seen_at=now)
    _set_subject(new, issuer, subject)
    return _created_unless_raced(new, lambda: find_by_subject(issuer, subject))


def _created_unless_raced(new: Person, find: Callable[[], Person | None]) -> tuple[Person, bool]:
    """Insert `new` in a savepoint; if a request at the same moment inserted the same number or account
    first (the unique index refuses ours), the person it created. Without this, two first-time requests
    for one number (a double tap, an SMS the gateway delivered twice) would fail one of them."""
    try:
        with db.session.begin_nested():
            db.session.add(new)
    except IntegrityError:
        existing = find()
        if existing is None:
            raise
        return existing, False
    return new, True


def attach_subject(person: Person, issuer: str, subject: str) -> None:
    _set_subject(person, issuer, subject)
    db.session.flush()


def _set_subject(person: Person, issuer: str, subject: str) -> None:
    person.oidc_subject_hash = subject_lookup(issuer, subject)
    person.oidc_subject_enc = keyring().encrypt(f"{issuer}|{subject}", context=SUBJECT)


# last_seen_at only keeps people alive for retention; refreshing it once an hour saves a write on
# almost every check-in.
SEEN_GRANULARITY = timedelta(hours=1)


def seen_is_stale(last_seen_at: datetime | None, now: datetime, granularity: timedelta = SEEN_GRANULARITY) -> bool:
    """Whether "last seen" is worth writing again (at most once per `granularity`)."""
    return last_seen_at is None or last_seen_at < now - granularity


def mark_seen(person: Person, now: datetime) -> None:
    if seen_is_stale(person.last_seen_at, now):
        person.last_seen_at = now


def lock_rows(which: ColumnElement[bool]) -> None:
    """Lock these people's rows, in id order, before anything changes their visits.

    Every path that changes a person's visits (check-in and check-out, the device check-in's read, kiosk
    batches) locks the person first and the visits after, so two of them never wait for each other in a
    circle. NO KEY UPDATE leaves others free to insert rows that refer to these people.
    `which` is on Person.__table__'s columns: one ORM attribute would make it an ORM statement, whose
    row loading costs a kiosk batch of 500 people more than the lock.
    """
    people = Person.__table__  # a table column: the ids come back as plain tuples, without the ORM's loading
    db.session.execute(select(people.c.id).where(which).order_by(people.c.id).with_for_update(key_share=True)).all()


def phone_of(person: Person) -> str | None:
    """The decrypted number. Callers that show it to an official must audit the reveal."""
    if person.phone_enc is None:
        return None
    return keyring().decrypt(person.phone_enc, context=PHONE)


def masked_phone(person: Person) -> str | None:
    """The person's number masked for their own page or app (+7916***4567); None without one. In sealed
    mode the web tier cannot open stored numbers, by design: None rather than a failure."""
    try:
        phone = phone_of(person)
    except PersonalDataError:
        return None
    return mask_phone(phone) if phone else None


def erase_person(person: Person, now: datetime) -> bool:
    """Erase everything the visitor gave us, in the caller's transaction; returns True if the row went too.

    Deleted: visits (with their companions and the exposures found for them), the person's places as
    someone else's companion, remembered devices, sign-in codes and their SMS, personal code keys,
    notices and queued or sent messages. Kept: audit entries (the law requires them; they hold no number). A
    person with a case on record keeps the Person row and its encrypted number, which the health
    officials' case record refers to, but loses the account link and everything listed above.
    An active case not yet matched refuses erasure (409): its visits are still needed to warn others.

    A visit that a companion with their own number came on is the companion's presence too: it is handed
    over to them (see _hand_over_shared_visits) instead of deleted, so their exposures and any warning
    still due to them survive, and a later case there still finds them.
    """
    from sqlalchemy import delete, update

    from app.errors import ConflictError
    from app.models import (
        Case,
        CaseStatus,
        Checkin,
        Companion,
        Exposure,
        LoginCode,
        Notice,
        OutboxMessage,
        PersonalCodeKey,
        RememberedDevice,
    )
    from app.services import audit
    from app.services.sign_in import code_message_key

    cases = db.session.scalars(select(Case).where(Case.person_id == person.id)).all()
    if any(c.status == CaseStatus.ACTIVE and c.matched_at is None for c in cases):
        raise ConflictError(
            "Your data is part of a health case that is still being processed; please try again in a day."
        )
    handed_over = _hand_over_shared_visits(person.id, now)
    # Evaluated by each statement below, after the hand-over: the visits still theirs.
    visit_ids = select(Checkin.id).where(Checkin.person_id == person.id).scalar_subquery()
    statements = [
        delete(OutboxMessage).where(OutboxMessage.person_id == person.id),
        update(Exposure).where(Exposure.case_checkin_id.in_(visit_ids)).values(case_checkin_id=None),
        delete(Exposure).where(Exposure.person_id == person.id),
        delete(Exposure).where(Exposure.checkin_id.in_(visit_ids)),
        update(Notice).where(Notice.checkin_id.in_(visit_ids)).values(checkin_id=None),
        delete(OutboxMessage).where(
            OutboxMessage.notice_id.in_(select(Notice.id).where(Notice.person_id == person.id).scalar_subquery())
        ),
        delete(Notice).where(Notice.person_id == person.id),
        delete(Companion).where(Companion.checkin_id.in_(visit_ids)),
        update(Companion).where(Companion.person_id == person.id).values(person_id=None),
        delete(Checkin).where(Checkin.person_id == person.id),
        delete(RememberedDevice).where(RememberedDevice.person_id == person.id),
        delete(PersonalCodeKey).where(PersonalCodeKey.person_id == person.id),
    ]
    if person.phone_hash is not None:
        # Every SMS to their number, also those that name no person: replies to texts sent before they
        # had an account.
        statements.append(delete(OutboxMessage).where(OutboxMessage.recipient_hash == person.phone_hash))
        # The sign-in codes' SMS carry the number but no person (the code came before the account):
        # found through their code requests' ids, which their deduplication keys name (messages queued
        # before migration o1 have no recipient hash).
        code_ids = db.session.scalars(select(LoginCode.id).where(LoginCode.phone_hash == person.phone_hash)).all()
        if code_ids:
            keys = [code_message_key(i) for i in code_ids]
            statements.append(delete(OutboxMessage).where(OutboxMessage.dedup_key.in_(keys)))
        statements.append(delete(LoginCode).where(LoginCode.phone_hash == person.phone_hash))
    for statement in statements:
        db.session.execute(statement, execution_options={"synchronize_session": False})
    detail = f"{handed_over} shared visits handed over to companions" if handed_over else ""
    audit.record("visitor", person.id, "erase_data", now=now, subject_person_id=person.id, target=detail)
    if cases:
        person.oidc_subject_hash = None
        person.oidc_subject_enc = None
        person.email_hash = None
        person.email_enc = None
        db.session.flush()
        return False
    db.session.execute(delete(Person).where(Person.id == person.id), execution_options={"synchronize_session": False})
    db.session.expunge(person)
    db.session.flush()
    return True


def _hand_over_shared_visits(person_id: int, now: datetime) -> int:
    """Give each of this person's visits that has a companion with an account to the first such companion;
    returns how many were handed over.

    The companion's row becomes the visit's owner and the party shrinks by one (the person erased). Their
    exposures and notices on it stay as they are: they already name the companion. An open visit stays
    open unless the companion has an open visit of their own (one open visit per person): then it ends
    now, or at its planned end if that came first, as an automatic check-out.
    """
    from sqlalchemy import delete, update
    from sqlalchemy.exc import IntegrityError

    from app.models import Checkin, CheckoutReason, Companion

    rows = db.session.execute(
        select(
            Companion.id,
            Companion.person_id,
            Checkin.id,
            Checkin.party_size,
            Checkin.checked_in_at,
            Checkin.planned_checkout_at,
            Checkin.checked_out_at,
        )
        .join(Checkin, Checkin.id == Companion.checkin_id)
        .where(Checkin.person_id == person_id, Companion.person_id.is_not(None), Companion.person_id != person_id)
        .order_by(Checkin.id, Companion.id)
    ).all()
    heirs = {}
    for row in rows:
        heirs.setdefault(row[2], row)  # the first companion with an account, per visit
    plain = {"synchronize_session": False}  # like erase_person's statements: the caller commits
    for companion_id, heir, visit_id, party_size, checked_in_at, planned_end, checked_out_at in heirs.values():
        db.session.execute(delete(Companion).where(Companion.id == companion_id), execution_options=plain)
        values: dict[str, object] = {"person_id": heir, "party_size": max(1, party_size - 1)}
        hand_over = update(Checkin).where(Checkin.id == visit_id)
        if checked_out_at is None:
            try:
                with db.session.begin_nested():
                    db.session.execute(hand_over.values(values), execution_options=plain)
                continue
            except IntegrityError:  # the companion has an open visit of their own
                values |= {
                    "checked_out_at": max(checked_in_at, min(now, planned_end)),
                    "checkout_reason": CheckoutReason.AUTO,
                }
        db.session.execute(hand_over.values(values), execution_options=plain)
    return len(heirs)


def set_phone(person: Person, phone_e164: str) -> None:
    person.phone_hash = phone_lookup(phone_e164)
    person.phone_enc = keyring().encrypt(phone_e164, context=PHONE)
    db.session.flush()
