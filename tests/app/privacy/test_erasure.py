"""Erase-my-data (people.erase_person) on a person with the whole product around them: visits, companions,
a health case's exposures and notices, queued SMS, sign-in codes, devices and keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.errors import ConflictError
from app.models import (
    AuditEntry,
    Base,
    Case,
    Checkin,
    CheckoutReason,
    Companion,
    Exposure,
    LoginCode,
    OfficialRole,
    OutboxMessage,
    Person,
    PersonalCodeKey,
    RememberedDevice,
)
from app.services import accounts, notices, people, sign_in
from app.services.exposures import match_case, rules_from_config
from app.services.outbox import RECIPIENT_CONTEXT
from app.services.personal_data import keyring, secret_hash
from tests import factories as f

MSK = ZoneInfo("Europe/Moscow")
CONTACT_PHONE = "+79165550177"
COMPANION_PHONE = "+79165550178"


@dataclass
class Scene:
    sick: Person
    contact: Person
    bystander: Person
    companion: Person
    case: Case
    contact_visit: Checkin
    bystander_visit: Checkin


def _scene(app: Flask, now: datetime, *, stage: str = "approved") -> Scene:
    """Three people at one venue at one time; the first is a case, by default matched and approved (stage
    "approved"; "matched" stops before approval, "recorded" before matching), so the other two have
    exposures, notices and queued SMS. The contact also asked for a sign-in code, has
    a remembered device and a personal code key, brought a companion with a phone and is listed as a
    companion on the bystander's visit."""
    venue = f.venue()
    start = now - timedelta(hours=5)
    sick, contact, bystander = f.person(), f.person(CONTACT_PHONE), f.person()
    companion = f.person(COMPANION_PHONE)
    f.checkin(sick, venue, start)
    contact_visit = f.checkin(contact, venue, start, party_size=2)
    bystander_visit = f.checkin(bystander, venue, start, party_size=2)
    f.db.session.add_all(
        [
            Companion(checkin_id=contact_visit.id, person_id=companion.id),
            Companion(checkin_id=bystander_visit.id, person_id=contact.id),
            RememberedDevice(person_id=contact.id, token_hash=secret_hash("device"), created_at=start),
            PersonalCodeKey(person_id=contact.id, purpose="qr", key_enc=b"sealed", created_at=start),
        ]
    )
    sign_in.request_code(CONTACT_PHONE, now - timedelta(days=2))
    case = Case(person_id=sick.id, tested_on=now.date(), created_at=now)
    f.db.session.add(case)
    f.db.session.flush()
    if stage in ("matched", "approved"):
        match_case(case.id, now=now, rules=rules_from_config(app.config), tz=MSK)
    if stage == "approved":
        official = accounts.create_official(
            "erasure@health.example", "correct horse battery", "Test", OfficialRole.SUPERVISOR
        )
        notices.approve_case(case.id, official, now=now, public_base_url="http://checkin.test")
    return Scene(sick, contact, bystander, companion, case, contact_visit, bystander_visit)


def _rows_about(person_id: int) -> dict[str, int]:
    """Rows in every table whose reference to people names this person (audit entries name no table)."""
    found = {}
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "people":
                count = f.db.session.scalar(select(func.count()).select_from(table).where(fk.parent == person_id))
                if count:
                    found[f"{table.name}.{fk.parent.name}"] = count
    return found


def _numbers_in_the_outbox() -> list[str]:
    ring = keyring()
    return [
        ring.decrypt(blob, context=RECIPIENT_CONTEXT)
        for blob in f.db.session.scalars(select(OutboxMessage.recipient_enc))
    ]


def test_erasing_a_notified_contact_leaves_no_row_and_no_number_of_theirs(app: Flask, db: Any, now: datetime) -> None:
    scene = _scene(app, now)
    contact_id = scene.contact.id
    before = _rows_about(contact_id)
    # The set-up did reach every kind of row the erasure must remove.
    assert {"checkins.person_id", "exposures.person_id", "notices.person_id", "outbox_messages.person_id"} <= set(
        before
    )
    assert {"companions.person_id", "remembered_devices.person_id", "personal_code_keys.person_id"} <= set(before)
    # The sign-in code, and a notice for each visit they were at: their own, and the bystander's as a companion.
    assert _numbers_in_the_outbox().count(CONTACT_PHONE) == 3
    bystander_rows = _rows_about(scene.bystander.id)

    assert people.erase_person(scene.contact, now) is True

    assert _rows_about(contact_id) == {}
    assert db.session.get(Person, contact_id) is None
    assert CONTACT_PHONE not in _numbers_in_the_outbox()  # the sign-in code's SMS names no person, yet went too
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 0
    # Their companion is no longer linked to anything of theirs but keeps their own account, and the
    # visit they came on is now theirs alone; the bystander's visit still counts the two people who came.
    assert db.session.get(Person, scene.companion.id) is not None
    assert "companions.person_id" not in _rows_about(scene.companion.id)
    handed_over = db.session.get(Checkin, scene.contact_visit.id)
    assert handed_over is not None and (handed_over.person_id, handed_over.party_size) == (scene.companion.id, 1)
    (kept,) = db.session.scalars(select(Companion).where(Companion.checkin_id == scene.bystander_visit.id))
    assert kept.person_id is None
    # Everyone else's rows are untouched: the bystander's notice and SMS, the case and its visit.
    assert _rows_about(scene.bystander.id) == bystander_rows
    assert _rows_about(scene.sick.id) == {"checkins.person_id": 1, "cases.person_id": 1}
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "erase_data"))
    assert entry is not None and entry.subject_person_id == contact_id
    assert entry.target == "1 shared visits handed over to companions"


def test_erasing_the_case_keeps_the_case_record_and_the_warnings_it_caused(app: Flask, db: Any, now: datetime) -> None:
    scene = _scene(app, now)
    contact_notices = _rows_about(scene.contact.id)["notices.person_id"]

    assert people.erase_person(scene.sick, now) is False  # the case record refers to the person

    person = db.session.get(Person, scene.sick.id)
    assert person is not None and person.phone_enc is not None and person.oidc_subject_hash is None
    assert _rows_about(scene.sick.id) == {"cases.person_id": 1}
    # The contacts keep their exposures and notices; what pointed at the case's visit no longer does.
    exposures = db.session.scalars(select(Exposure).where(Exposure.case_id == scene.case.id)).all()
    assert {e.person_id for e in exposures} == {scene.contact.id, scene.bystander.id, scene.companion.id}
    assert all(e.case_checkin_id is None for e in exposures)
    assert _rows_about(scene.contact.id)["notices.person_id"] == contact_notices


def test_an_active_case_not_yet_matched_refuses_erasure_and_changes_nothing(app: Flask, db: Any, now: datetime) -> None:
    scene = _scene(app, now, stage="recorded")
    before = {p.id: _rows_about(p.id) for p in (scene.sick, scene.contact, scene.bystander)}
    with pytest.raises(ConflictError, match="still being processed"):
        people.erase_person(scene.sick, now)
    assert {p.id: _rows_about(p.id) for p in (scene.sick, scene.contact, scene.bystander)} == before
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "erase_data")) == 0


def test_a_companions_warning_still_due_survives_the_erasure_of_the_visitor_who_brought_them(
    app: Flask, db: Any, now: datetime
) -> None:
    """The contact erases their data after matching and before approval. The companion they brought
    gave their own number: their exposure stays, on the visit now theirs, and approval still warns them."""
    scene = _scene(app, now, stage="matched")
    companion_exposure = db.session.scalar(select(Exposure).where(Exposure.person_id == scene.companion.id))
    assert companion_exposure is not None and companion_exposure.checkin_id == scene.contact_visit.id
    before = {k: v for k, v in _rows_about(scene.companion.id).items() if k != "companions.person_id"}

    assert people.erase_person(scene.contact, now) is True

    assert _rows_about(scene.contact.id) == {}
    after = _rows_about(scene.companion.id)
    assert after == before | {"checkins.person_id": 1}
    kept = db.session.get(Exposure, companion_exposure.id)
    assert kept is not None and kept.checkin_id == scene.contact_visit.id and kept.person_id == scene.companion.id
    official = accounts.create_official(
        "approve@health.example", "correct horse battery", "Test", OfficialRole.SUPERVISOR
    )
    notices.approve_case(scene.case.id, official, now=now, public_base_url="http://checkin.test")
    assert COMPANION_PHONE in _numbers_in_the_outbox()
    assert CONTACT_PHONE not in _numbers_in_the_outbox()


def test_a_later_case_still_finds_the_companion_on_the_handed_over_visit(app: Flask, db: Any, now: datetime) -> None:
    scene = _scene(app, now, stage="matched")
    assert people.erase_person(scene.contact, now) is True
    # Someone else at the venue at the same time turns out positive later.
    second = Case(person_id=scene.bystander.id, tested_on=now.date(), created_at=now)
    db.session.add(second)
    db.session.flush()
    match_case(second.id, now=now, rules=rules_from_config(app.config), tz=MSK)
    exposed = set(db.session.scalars(select(Exposure.person_id).where(Exposure.case_id == second.id)))
    assert exposed == {scene.sick.id, scene.companion.id}


@pytest.mark.parametrize("companion_has_own_open_visit", [False, True])
def test_an_open_visit_handed_over_stays_open_unless_the_companion_is_checked_in_elsewhere(
    db: Any, now: datetime, companion_has_own_open_visit: bool
) -> None:
    venue, elsewhere = f.venue(), f.venue()
    owner, companion = f.person(CONTACT_PHONE), f.person(COMPANION_PHONE)
    shared = f.checkin(owner, venue, now - timedelta(minutes=20), minutes=None, party_size=3)
    f.db.session.add_all(
        [Companion(checkin_id=shared.id, person_id=None), Companion(checkin_id=shared.id, person_id=companion.id)]
    )
    if companion_has_own_open_visit:
        f.checkin(companion, elsewhere, now - timedelta(hours=2), minutes=None, planned_minutes=180)
    f.db.session.flush()
    shared_id = shared.id

    assert people.erase_person(owner, now) is True

    db.session.expire_all()  # erase_person writes with plain statements; its caller commits
    visit = db.session.get(Checkin, shared_id)
    assert visit is not None and visit.person_id == companion.id and visit.party_size == 2
    # The companion without a number still counts, with the visit.
    assert [c.person_id for c in db.session.scalars(select(Companion).where(Companion.checkin_id == shared_id))] == [
        None
    ]
    if companion_has_own_open_visit:
        assert (visit.checked_out_at, visit.checkout_reason) == (now, CheckoutReason.AUTO)
    else:
        assert visit.checked_out_at is None
    open_visits = db.session.scalar(
        select(func.count())
        .select_from(Checkin)
        .where(Checkin.person_id == companion.id, Checkin.checked_out_at.is_(None))
    )
    assert open_visits == 1


def test_erasure_deletes_the_replies_to_texts_sent_before_the_person_had_an_account(
    app: Flask, db: Any, now: datetime
) -> None:
    from app.services import sms_commands

    sender, someone_else = "+79168000777", "+79168000778"
    venue = f.venue()
    # First texts the service cannot act on (a mistyped code), which make no account; then a check-in.
    sms_commands.handle_incoming_sms(sender, "12345", now - timedelta(hours=2), message_id="gw-1")
    sms_commands.handle_incoming_sms(someone_else, "12345", now - timedelta(hours=2), message_id="gw-2")
    sms_commands.handle_incoming_sms(sender, venue.short_code, now - timedelta(hours=1), message_id="gw-3")
    person = people.find_by_phone(sender)
    assert person is not None and _numbers_in_the_outbox().count(sender) == 2
    people.erase_person(person, now)
    assert _numbers_in_the_outbox() == [someone_else]
