"""SMS commands to the short number: venue code, party size, check-out, and a reply to everything."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.models import Checkin, CheckinSource, MessageKind, OutboxMessage
from app.services import outbox, people, sms_commands
from tests import factories

SENDER = "+79168000001"


def replies(db: Any) -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == MessageKind.CONFIRMATION).order_by(OutboxMessage.id)
        )
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123456789", sms_commands.Command("checkin", "123456789", 1)),
        (" 123 456-789 ", sms_commands.Command("checkin", "123456789", 1)),
        ("123-456-789 3", sms_commands.Command("checkin", "123456789", 3)),
        ("123456789 0", sms_commands.Command("bad_party", "123456789", 1)),
        ("123456789 99", sms_commands.Command("bad_party", "123456789", 1)),
        ("out", sms_commands.Command("checkout")),
        ("Выход", sms_commands.Command("checkout")),
        ("OUT.", sms_commands.Command("checkout")),
        ("Выход!", sms_commands.Command("checkout")),
        (" «выход» ", sms_commands.Command("checkout")),
        ("\u041eU\u0422", sms_commands.Command("checkout")),  # OUT with a Cyrillic О and Т
        ("BЫXOД", sms_commands.Command("checkout")),  # ВЫХОД with a Latin B, X and O
        ("?", sms_commands.Command("help")),
        ("OUTSIDE", sms_commands.Command("malformed")),
        ("", sms_commands.Command("help")),
        ("hello", sms_commands.Command("malformed")),
        ("1234567890", sms_commands.Command("malformed", "1234567890")),
        ("12345", sms_commands.Command("malformed", "12345")),
        ("1234 56789", sms_commands.Command("checkin", "123456789", 1)),
        ("12345678 3", sms_commands.Command("malformed", "12345678")),  # not the code 123456783
        ("1234567 89", sms_commands.Command("malformed", "1234567")),
        ("12 345 6789", sms_commands.Command("malformed")),
    ],
)
def test_parse_reads_what_people_type(text: str, expected: sms_commands.Command) -> None:
    assert sms_commands.parse(text) == expected


def test_venue_code_checks_the_sender_in_and_replies_in_russian(db: Any, now: datetime) -> None:
    venue = factories.venue(name="Кафе «Тест»")
    reply = sms_commands.handle_incoming_sms(SENDER, f"{venue.short_code[:3]} {venue.short_code[3:]}", now)
    assert reply.startswith("Вы отмечены: Кафе «Тест», 15:00, до 16:00")
    person = people.find_by_phone(SENDER)
    visit = db.session.scalar(select(Checkin).where(Checkin.person_id == person.id))
    assert visit.source == CheckinSource.SMS
    assert visit.venue_id == venue.id
    [message] = replies(db)
    assert outbox.recipient_of(message) == SENDER
    assert message.body == reply
    assert message.person_id == person.id


def test_party_size_adds_companions_and_repeat_text_continues(db: Any, now: datetime) -> None:
    venue = factories.venue()
    sms_commands.handle_incoming_sms(SENDER, f"{venue.short_code} 3", now)
    again = sms_commands.handle_incoming_sms(SENDER, venue.short_code, now + timedelta(minutes=5))
    assert again.startswith("Вы уже отмечены")
    person = people.find_by_phone(SENDER)
    visits = list(db.session.scalars(select(Checkin).where(Checkin.person_id == person.id)))
    assert len(visits) == 1
    assert visits[0].party_size == 3
    assert len(visits[0].companions) == 2


def test_out_checks_out_and_a_second_out_says_nothing_is_open(db: Any, now: datetime) -> None:
    venue = factories.venue()
    sms_commands.handle_incoming_sms(SENDER, venue.short_code, now)
    reply = sms_commands.handle_incoming_sms(SENDER, "ВЫХОД", now + timedelta(minutes=30))
    assert reply.startswith("Выход отмечен")
    assert "15:30" in reply
    assert sms_commands.handle_incoming_sms(SENDER, "OUT", now + timedelta(minutes=31)) == "Активного посещения нет."
    assert len(replies(db)) == 3


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("999999998", "Код 999999998 не найден"),
        ("привет", "Отправьте 9-значный код"),
        ("12345", "Код 12345 не найден"),
        ("12345678 3", "Код 12345678 не найден"),
        ("x" * 10_000, "Отправьте 9-значный код"),
    ],
)
def test_unknown_or_malformed_text_gets_a_helpful_reply_and_checks_nobody_in(
    db: Any, now: datetime, text: str, start: str
) -> None:
    # A venue whose code a typo could turn into: "12345678 3" must not check anyone in there.
    factories.venue().short_code = "123456783"
    db.session.flush()
    reply = sms_commands.handle_incoming_sms(SENDER, text, now)
    assert reply.startswith(start)
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0
    assert people.find_by_phone(SENDER) is None
    assert [m.body for m in replies(db)] == [reply]


def test_archived_venue_gets_a_reply_and_no_visit(db: Any, now: datetime) -> None:
    venue = factories.venue()
    venue.archived_at = now - timedelta(days=1)
    reply = sms_commands.handle_incoming_sms(SENDER, venue.short_code, now)
    assert "больше не принимает" in reply
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0


def test_a_redelivered_gateway_message_is_answered_once(db: Any, now: datetime) -> None:
    venue = factories.venue()
    first = sms_commands.handle_incoming_sms(SENDER, venue.short_code, now, message_id="gw-42")
    second = sms_commands.handle_incoming_sms(SENDER, venue.short_code, now + timedelta(minutes=1), message_id="gw-42")
    assert first == second
    assert len(replies(db)) == 1


def test_unusable_sender_gets_no_queued_reply(db: Any, now: datetime) -> None:
    reply = sms_commands.handle_incoming_sms("SHORTCODE", "123456789", now)
    assert reply
    assert replies(db) == []
