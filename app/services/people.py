"""People: finding or creating a person by phone number or account subject, without storing either in clear."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from sqlalchemy import select

from app.errors import ValidationError
from app.extensions import db
from app.models import Person
from app.services.personal_data import keyring

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
    person = Person(
        phone_hash=phone_lookup(phone_e164),
        phone_enc=keyring().encrypt(phone_e164, context=PHONE),
        created_at=now,
        last_seen_at=now,
    )
    db.session.add(person)
    db.session.flush()
    return person, True


def attach_subject(person: Person, issuer: str, subject: str) -> None:
    person.oidc_subject_hash = subject_lookup(issuer, subject)
    person.oidc_subject_enc = keyring().encrypt(f"{issuer}|{subject}", context=SUBJECT)
    db.session.flush()


def phone_of(person: Person) -> str | None:
    """The decrypted number. Callers that show it to an official must audit the reveal."""
    if person.phone_enc is None:
        return None
    return keyring().decrypt(person.phone_enc, context=PHONE)
