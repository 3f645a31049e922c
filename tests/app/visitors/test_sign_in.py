"""Phone sign-in: codes by SMS, wrong, expired and replayed codes, limits, no number enumeration."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.errors import NotFoundError, RateLimited, ValidationError
from app.models import LoginCode, MessageKind, OutboxMessage, Person, RememberedDevice
from app.services import outbox, people, sign_in
from tests import factories


def sent_code(db: Any, phone: str) -> str:
    """The code in the last SMS that went out to `phone`."""
    for message in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())):
        if message.kind == MessageKind.OTP and outbox.recipient_of(message) == phone:
            match = re.search(r"\b(\d{6})\b", message.body)
            assert match, message.body
            return match.group(1)
    raise AssertionError(f"no code went out to {phone}")


def people_count(db: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(Person))


def test_correct_code_creates_the_person_and_a_remembered_device(db: Any, now: datetime) -> None:
    request = sign_in.request_code("8 (916) 700-00-01", now)
    assert request.masked_phone == "+7916***0001"
    assert people.find_by_phone("+79167000001") is None  # nobody exists before the code is confirmed
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == f"otp:{request.login_code.id}"))
    assert message.priority == 0
    assert "+7916" not in message.body
    person, token = sign_in.confirm_code(request.login_code.id, sent_code(db, "+79167000001"), now)
    assert people.phone_of(person) == "+79167000001"
    assert sign_in.person_for_device(token, now) is person
    stored = db.session.scalar(select(RememberedDevice).where(RememberedDevice.person_id == person.id))
    assert token.encode() not in stored.token_hash


def test_code_for_a_known_number_signs_in_that_person(db: Any, now: datetime) -> None:
    known = factories.person("+79167000002")
    request = sign_in.request_code("+7 916 700 00 02", now)
    person, _ = sign_in.confirm_code(request.login_code.id, sent_code(db, "+79167000002"), now)
    assert person.id == known.id


def test_only_a_keyed_hash_of_the_code_is_stored(db: Any, now: datetime) -> None:
    request = sign_in.request_code("+79167000003", now)
    code = sent_code(db, "+79167000003")
    row = db.session.get(LoginCode, request.login_code.id)
    assert code.encode() not in row.code_hash
    assert b"9167000003" not in row.phone_enc


def test_wrong_codes_count_and_the_last_allowed_attempt_locks_the_code(db: Any, now: datetime) -> None:
    request = sign_in.request_code("+79167000004", now)
    right = sent_code(db, "+79167000004")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(sign_in.setting("OTP_MAX_ATTEMPTS")):
        with pytest.raises(sign_in.CodeRefused):
            sign_in.confirm_code(request.login_code.id, wrong, now)
    with pytest.raises(sign_in.CodeRefused, match="Too many"):
        sign_in.confirm_code(request.login_code.id, right, now)


def test_expired_code_is_refused(db: Any, now: datetime) -> None:
    request = sign_in.request_code("+79167000005", now)
    code = sent_code(db, "+79167000005")
    later = now + timedelta(seconds=sign_in.setting("OTP_TTL_SECONDS"))
    with pytest.raises(sign_in.CodeRefused, match="expired"):
        sign_in.confirm_code(request.login_code.id, code, later)


def test_a_code_works_once_and_a_replay_is_refused(db: Any, now: datetime) -> None:
    request = sign_in.request_code("+79167000006", now)
    code = sent_code(db, "+79167000006")
    sign_in.confirm_code(request.login_code.id, code, now)
    with pytest.raises(sign_in.CodeRefused, match="already been used"):
        sign_in.confirm_code(request.login_code.id, code, now + timedelta(seconds=5))


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "１２３４５６", "1" * 10_000])
def test_malformed_codes_are_refused_without_counting(db: Any, now: datetime, typed: str) -> None:
    request = sign_in.request_code("+79167000007", now)
    with pytest.raises(ValidationError):
        sign_in.confirm_code(request.login_code.id, typed, now)
    assert request.login_code.attempts == 0


@pytest.mark.parametrize("login_code_id", [None, "1", 10**12, True])
def test_unknown_code_requests_are_not_found(db: Any, now: datetime, login_code_id: Any) -> None:
    with pytest.raises(NotFoundError):
        sign_in.confirm_code(login_code_id, "123456", now)


def test_per_number_limit_counts_stored_codes_of_the_last_hour(db: Any, now: datetime) -> None:
    limit = sign_in.setting("OTP_PER_NUMBER_PER_HOUR")
    for i in range(limit):
        sign_in.request_code("+79167000008", now + timedelta(minutes=i))
    with pytest.raises(RateLimited):
        sign_in.request_code("+79167000008", now + timedelta(minutes=limit))
    sign_in.request_code("+79167000009", now)  # another number is not affected
    sign_in.request_code("+79167000008", now + timedelta(minutes=61))  # the hour has moved on


def test_the_answer_is_the_same_for_known_and_unknown_numbers(db: Any, now: datetime) -> None:
    factories.person("+79167000010")
    before = people_count(db)
    known = sign_in.request_code("+79167000010", now)
    unknown = sign_in.request_code("+79167000011", now)
    assert type(known) is type(unknown)
    assert known.masked_phone.replace("0010", "") == unknown.masked_phone.replace("0011", "")
    assert people_count(db) == before


@pytest.mark.parametrize("phone", ["", "12", "+7 495 123-45-67", "+1 202 555 01", "phone", "+" + "9" * 40])
def test_invalid_or_landline_numbers_are_refused(db: Any, now: datetime, phone: str) -> None:
    with pytest.raises(ValidationError):
        sign_in.request_code(phone, now)
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 0


def test_foreign_mobile_numbers_are_accepted(db: Any, now: datetime) -> None:
    request = sign_in.request_code("+49 151 23456789", now)
    person, _ = sign_in.confirm_code(request.login_code.id, sent_code(db, "+4915123456789"), now)
    assert people.phone_of(person) == "+4915123456789"


def test_revoked_device_is_refused_and_unknown_tokens_are_nobody(db: Any, now: datetime) -> None:
    person = factories.person()
    token = sign_in.remember_device(person, now)
    device = sign_in.devices_of(person)[0]
    sign_in.revoke_device(person, device.id, now)
    with pytest.raises(sign_in.DeviceRevoked):
        sign_in.person_for_device(token, now)
    assert sign_in.person_for_device("not-a-token", now) is None
    with pytest.raises(NotFoundError):
        sign_in.revoke_device(factories.person(), device.id, now)
