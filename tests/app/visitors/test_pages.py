"""The poster page and the sign-in by SMS code, through the Flask client (CSRF on)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.models import Checkin, LoginCode, Person, PersonalCodeKey
from app.services import people, personal_codes
from tests.support.forms import csrf_token

from .conftest import Poster, last_code_sent_to

PHONE = "+79169000001"


def sign_in_and_check_in(client: FlaskClient, db: Any, poster: Poster, phone: str = PHONE, **extra: str) -> Any:
    page = client.get(poster.path)
    assert page.status_code == 200
    sent = client.post("/signin/code", data={"csrf_token": csrf_token(page.text), "phone": phone, "next": poster.path})
    assert sent.status_code == 303
    form = client.get(sent.headers["Location"])
    assert "+7916***0001" in form.text or phone[-4:] in form.text
    return client.post(
        "/signin/confirm",
        data={"csrf_token": csrf_token(form.text), "code": last_code_sent_to(db, phone), **extra},
    )


def visits(db: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(Checkin))


def test_poster_page_shows_venue_entrance_and_phone_form_in_russian(client: FlaskClient, poster: Poster) -> None:
    page = client.get(poster.path)
    assert page.status_code == 200
    assert "Кафе «Тест»" in page.text
    assert "Main entrance" in page.text
    assert "Номер мобильного телефона" in page.text
    assert 'name="csrf_token"' in page.text
    assert poster.venue.short_code in page.text  # the SMS alternative
    assert "mos.ru" not in page.text  # OIDC_ISSUER is empty in tests
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_english_is_switchable_and_remembered(client: FlaskClient, poster: Poster) -> None:
    page = client.get(poster.path + "?lang=en")
    assert "Mobile phone number" in page.text
    assert "lang=en" in page.headers["Set-Cookie"]
    assert "Mobile phone number" in client.get(poster.path).text


def test_phone_then_code_checks_in_and_remembers_the_device(client: FlaskClient, db: Any, poster: Poster) -> None:
    done = sign_in_and_check_in(client, db, poster, party_size="2")
    assert done.status_code == 303
    cookie = done.headers["Set-Cookie"]
    assert "device=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    success = client.get(done.headers["Location"])
    assert "Вы отмечены" in success.text
    assert "Кафе «Тест»" in success.text
    assert 'id="planned"' in success.text and 'id="check-out"' in success.text
    visit = db.session.scalar(select(Checkin))
    assert visit.party_size == 2
    # Next time: one tap.
    again = client.get(poster.path)
    assert 'id="check-in"' in again.text
    assert "Номер мобильного телефона" not in again.text
    repeat = client.post("/checkin", data={"csrf_token": csrf_token(again.text), "place": poster.path})
    assert repeat.status_code == 303
    assert "Вы уже отмечены здесь" in client.get(repeat.headers["Location"]).text
    assert visits(db) == 1


def test_check_out_button_ends_the_visit(client: FlaskClient, db: Any, poster: Poster) -> None:
    done = sign_in_and_check_in(client, db, poster)
    success = client.get(done.headers["Location"])
    out = client.post(
        done.headers["Location"].split("?")[0] + "/checkout", data={"csrf_token": csrf_token(success.text)}
    )
    assert out.status_code == 303
    assert "Посещение завершено" in client.get(out.headers["Location"]).text
    assert db.session.scalar(select(Checkin)).checked_out_at is not None


def test_check_out_from_a_stale_page_of_an_ended_visit_leaves_the_newer_visit_open(
    client: FlaskClient, db: Any, poster: Poster, now: datetime
) -> None:
    from app.models import CheckinSource, utcnow
    from app.services import checkins
    from tests import factories

    done = sign_in_and_check_in(client, db, poster)
    stale = client.get(done.headers["Location"])  # visit A's page, with its check-out button
    first = db.session.scalar(select(Checkin))
    # Meanwhile the visitor checks in elsewhere (by SMS, say): A ends, B is open.
    person = db.session.get(Person, first.person_id)
    newer = checkins.check_in(person, factories.venue(name="Театр"), None, CheckinSource.SMS, utcnow()).checkin
    db.session.commit()
    out = client.post(done.headers["Location"].split("?")[0] + "/checkout", data={"csrf_token": csrf_token(stale.text)})
    assert out.status_code == 303
    db.session.expire_all()
    assert db.session.get(Checkin, newer.id).checked_out_at is None


def test_wrong_code_is_counted_even_though_the_answer_is_a_refusal(
    client: FlaskClient, db: Any, poster: Poster
) -> None:
    page = client.get(poster.path)
    sent = client.post("/signin/code", data={"csrf_token": csrf_token(page.text), "phone": PHONE, "next": poster.path})
    form = client.get(sent.headers["Location"])
    right = last_code_sent_to(db, PHONE)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = client.post("/signin/confirm", data={"csrf_token": csrf_token(form.text), "code": wrong})
    assert refused.status_code == 400
    assert "Неверный код. Осталось попыток" in refused.text
    assert db.session.scalar(select(LoginCode)).attempts == 1
    assert visits(db) == 0


def test_revoked_device_cookie_falls_back_to_the_phone_form_with_a_message(
    client: FlaskClient, db: Any, poster: Poster
) -> None:
    sign_in_and_check_in(client, db, poster)
    me = client.get("/me")
    assert "Мои посещения" in me.text
    device_id = me.text.split("/me/devices/")[1].split("/")[0]
    revoked = client.post(f"/me/devices/{device_id}/revoke", data={"csrf_token": csrf_token(me.text)})
    assert revoked.status_code == 303
    page = client.get(poster.path)
    assert "Этот телефон был отключён" in page.text
    assert "Номер мобильного телефона" in page.text
    assert 'id="check-in"' not in page.text


def test_me_lists_visits_with_their_deletion_date_and_a_personal_qr(
    client: FlaskClient, db: Any, poster: Poster
) -> None:
    sign_in_and_check_in(client, db, poster)
    me = client.get("/me")
    assert "Кафе «Тест»" in me.text
    assert "удалится" in me.text
    assert "<svg" in me.text and "+7916***0001" in me.text
    assert PHONE not in me.text
    qr = client.get("/me/qr.svg")
    assert qr.status_code == 200 and qr.headers["Content-Type"] == "image/svg+xml"
    # Visit ids from the address or its query past the id column's range: "not found", not a 500.
    visit = db.session.scalars(select(Checkin)).one()
    assert client.get(f"/visit/{visit.id}?ended=3000000000").status_code == 404
    assert client.get("/visit/3000000000").status_code == 404


def test_the_page_shows_bluetooth_check_in_and_turns_it_off(
    client: FlaskClient, db: Any, poster: Poster, now: datetime
) -> None:
    sign_in_and_check_in(client, db, poster)
    assert "Выключен. Его включает городское приложение" in client.get("/me").text
    person = db.session.scalars(select(Person)).one()
    key = personal_codes.ble_key_for_phone(person, now, timedelta(hours=24))
    db.session.commit()
    page = client.get("/me")
    assert "Включён: городское приложение получило ключ" in page.text
    turned_off = client.post("/me/bluetooth/off", data={"csrf_token": csrf_token(page.text)})
    assert turned_off.status_code == 303
    assert db.session.get(PersonalCodeKey, key.key_id).revoked_at is not None
    assert "Выключен." in client.get("/me").text


def test_erase_needs_a_confirmation_step_then_deletes_the_person(client: FlaskClient, db: Any, poster: Poster) -> None:
    sign_in_and_check_in(client, db, poster)
    confirm = client.get("/me/erase")
    assert "Удалить все ваши данные?" in confirm.text
    assert people.find_by_phone(PHONE) is not None
    done = client.post("/me/erase", data={"csrf_token": csrf_token(confirm.text)})
    assert done.status_code == 200
    assert "Ваши данные удалены" in done.text
    assert people.find_by_phone(PHONE) is None
    assert visits(db) == 0
    assert db.session.scalar(select(func.count()).select_from(Person)) == 0
    assert client.get("/me").status_code == 200  # back to the sign-in form


def test_forms_without_csrf_token_are_refused(client: FlaskClient, poster: Poster, db: Any) -> None:
    response = client.post("/signin/code", data={"phone": PHONE, "next": poster.path})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 0


def test_code_requests_per_address_are_limited(
    client: FlaskClient, app: Any, poster: Poster, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # monkeypatch restores the setting: later tests on the same app need it.
    monkeypatch.setitem(app.config, "OTP_PER_ADDRESS_PER_HOUR", 2)
    token = csrf_token(client.get(poster.path).text)
    statuses = [
        client.post(
            "/signin/code", data={"csrf_token": token, "phone": f"+7916900000{i}", "next": poster.path}
        ).status_code
        for i in range(3)
    ]
    assert statuses == [303, 303, 429]


def test_code_requests_per_device_are_limited(
    client: FlaskClient, app: Any, poster: Poster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_PER_DEVICE_PER_HOUR", 2)
    monkeypatch.setitem(app.config, "OTP_PER_ADDRESS_PER_HOUR", 50)

    def ask(browser: FlaskClient, i: int) -> int:
        # The test's app context outlives requests, and Flask-WTF keeps the form token in `g`: forget it, as
        # a new request context would, so that each browser gets its own.
        g.pop("csrf_token", None)
        token = csrf_token(browser.get(poster.path).text)
        data = {"csrf_token": token, "phone": f"+7916920{i:04d}", "next": poster.path}
        answer = browser.post("/signin/code", data=data)
        if answer.status_code == 429:  # a sentence in the page's language, not the limit's own notation
            assert "Слишком много попыток. Попробуйте снова через 60 мин." in answer.text, answer.text
            assert "per 1 hour" not in answer.text and answer.headers["Retry-After"]
        return answer.status_code

    assert [ask(client, i) for i in range(3)] == [303, 303, 429]
    assert ask(app.test_client(), 3) == 303  # another browser from the same address is not held back
