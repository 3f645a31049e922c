"""A database dump alone reveals no phone number, e-mail address or account subject."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect, text

from app.models import MessageChannel, MessageKind, OfficialRole
from app.services import accounts, outbox, people
from tests import factories

PHONE = "+79161234567"
COMPANION_PHONE = "+79167654321"
STAFF_EMAIL = "director@cafe-romashka.example"
OFFICIAL_EMAIL = "epidemiologist@health.example"
VISITOR_EMAIL = "visitor.private@mail.example"
SUBJECT = "mos-ru-subject-8f3a2c"


def _dump(db: Any) -> str:
    """Every value of every table as text, bytes included both raw and hex (what a dump would show)."""
    conn = db.session.connection()
    parts: list[str] = []
    for table in inspect(conn).get_table_names():
        for row in conn.execute(text(f'SELECT * FROM "{table}"')):
            for value in row:
                if isinstance(value, bytes | memoryview):
                    raw = bytes(value)
                    parts.append(raw.decode("latin-1"))
                    parts.append(raw.hex())
                else:
                    parts.append(str(value))
    return "\n".join(parts)


def _variants(phone: str) -> list[str]:
    digits = re.sub(r"\D", "", phone)
    return [phone, digits, digits[1:], "8" + digits[1:], digits.encode().hex()]


def test_a_realistic_scenario_leaves_no_contact_data_in_clear(db: Any, now: datetime) -> None:
    owner = accounts.create_organisation_with_owner("Кафе «Ромашка»", STAFF_EMAIL, "long-enough-password")
    accounts.create_official(OFFICIAL_EMAIL, "another-long-password", "Эпидемиолог", OfficialRole.OFFICIAL)
    venue = factories.venue(owner.organisation)
    visitor, _ = people.get_or_create_by_phone(PHONE, now)
    people.attach_subject(visitor, "https://login.mos.example", SUBJECT)
    companion, _ = people.get_or_create_by_phone(COMPANION_PHONE, now)
    factories.checkin(visitor, venue, now - timedelta(hours=2), party_size=2)
    outbox.enqueue(
        dedup_key="otp:1", channel=MessageChannel.SMS, kind=MessageKind.OTP, recipient=PHONE, body="Код 123456", now=now
    )
    outbox.enqueue(
        dedup_key="mail:1",
        channel=MessageChannel.EMAIL,
        kind=MessageKind.NOTICE,
        recipient=VISITOR_EMAIL,
        body="notice",
        now=now,
    )
    db.session.flush()
    dump = _dump(db)
    assert "Кафе «Ромашка»" in dump  # the dump is real: venue names are not personal data
    for secret in [*_variants(PHONE), *_variants(COMPANION_PHONE), STAFF_EMAIL, OFFICIAL_EMAIL, VISITOR_EMAIL, SUBJECT]:
        assert secret not in dump, f"{secret!r} found in clear in the database"
    assert people.phone_of(companion) == COMPANION_PHONE  # still readable with the key
