"""A visitor's own page lists who accessed their data and when."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

from app.services import audit, people, sign_in
from app.views.visitors import DEVICE_COOKIE, _serializer


def test_my_page_lists_reveals_and_case_records_about_me_and_nothing_about_others(
    client: FlaskClient, db: Any, now: datetime
) -> None:
    me, _ = people.get_or_create_by_phone("+79161112233", now)
    other, _ = people.get_or_create_by_phone("+79164445566", now)
    audit.record("official", 7, "phone.reveal", now=now - timedelta(hours=1), subject_person_id=me.id, reason="call")
    audit.record("official", 8, "case.record", now=now - timedelta(hours=2), subject_person_id=other.id)
    token = sign_in.remember_device(me, now)
    db.session.commit()
    with client.application.app_context():
        client.set_cookie(DEVICE_COOKIE, _serializer().dumps(token))
    page = client.get("/me?lang=en").get_data(as_text=True)
    assert "Who accessed my data" in page
    assert "a health official №7 revealed your phone number" in page
    assert "№8" not in page  # another person's record is not shown


def test_every_reveal_stays_listed_however_many_case_page_views_came_after(db: Any, now: datetime) -> None:
    me, _ = people.get_or_create_by_phone("+79161112233", now)
    audit.record("official", 7, "phone.reveal", now=now - timedelta(days=3), subject_person_id=me.id, reason="call")
    for minute in range(150):  # an official opening the case page again and again
        audit.record("official", 8, "case.view", now=now - timedelta(minutes=minute), subject_person_id=me.id)
    entries = audit.entries_about(me.id)
    assert len(entries) == 101
    assert [e.action for e in entries].count("phone.reveal") == 1
    assert entries[-1].action == "phone.reveal"  # the oldest, last
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
