"""Refusals on the visitors' pages speak the page's language: Russian by default, English when chosen.
The JSON API and the staff pages keep the English text."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.services.i18n import ERRORS_RU, localise_error
from tests.support.forms import csrf_token

from .conftest import Poster

ROOT = Path(__file__).resolve().parents[3] / "app"
# The code a visitor's request passes through, whose refusals reach the visitors' pages.
VISITOR_FACING = [
    "services/people.py",
    "services/sign_in.py",
    "services/mosru.py",
    "services/posters/tokens.py",
    "services/posters/lookup.py",
    *(f"services/checkins/{p.name}" for p in (ROOT / "services/checkins").glob("*.py")),
    *(f"views/visitors/{p.name}" for p in (ROOT / "views/visitors").glob("*.py")),
    "security.py",
]
NOT_FOR_PEOPLE = {"ValueError", "TypeError", "KeyError", "AssertionError", "RuntimeError", "NotImplementedError"}


def refusals(path: Path) -> list[str]:
    """The constant texts a module refuses with: raise X("..."), abort(status, "..."), default_message."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            first = node.exc.args[0]
            if name not in NOT_FOR_PEOPLE and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "abort" and len(node.args) == 2:
            found.append(node.args[1].value)  # type: ignore[attr-defined]
        elif isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["default_message"]:
            found.append(node.value.value)  # type: ignore[attr-defined]
    return found


def test_every_refusal_a_visitor_can_meet_has_its_russian_text() -> None:
    texts = {text for module in VISITOR_FACING for text in refusals(ROOT / module)}
    assert len(texts) > 30  # the walk found them
    missing = sorted(t for t in texts if localise_error(t, "ru") == t)
    assert missing == []
    assert all(localise_error(t, "en") == t for t in texts)


@pytest.mark.parametrize(
    ("english", "russian"),
    [
        ("Wrong code; 2 attempt(s) left.", "Неверный код. Осталось попыток: 2."),
        ("Only visits of the last 21 days can be corrected.", "Исправить можно посещения за последние 21 дн."),
        ("Something nobody wrote down.", "Something nobody wrote down."),  # unknown: left as it is
    ],
)
def test_texts_with_numbers_are_translated_with_their_numbers(english: str, russian: str) -> None:
    assert localise_error(english, "ru") == russian
    assert all(ru != en for en, ru in ERRORS_RU.items())


def test_a_forged_poster_is_refused_in_russian_and_in_english_when_chosen(client: FlaskClient) -> None:
    page = client.get("/p/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert page.status_code == 400
    assert '<html lang="ru">' in page.text and "Не получилось" in page.text and "На главную" in page.text
    assert "Этот QR-код — не плакат нашего сервиса." in page.text and "poster" not in page.text
    english = client.get("/p/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?lang=en")
    assert '<html lang="en">' in english.text and "Cannot do that" in english.text
    assert "This QR code is not a valid poster of this service." in english.text


def test_a_mistyped_phone_number_is_refused_in_the_pages_language(client: FlaskClient, poster: Poster) -> None:
    token = csrf_token(client.get(poster.path).text)
    refused = client.post("/signin/code", data={"csrf_token": token, "phone": "hello", "next": poster.path})
    assert refused.status_code == 400 and "Это не похоже на номер телефона." in refused.text
    # A form sent without its token is refused before the visitors' own hooks run: still in Russian.
    stale = client.post("/signin/code", data={"phone": "+79169100001", "next": poster.path})
    assert stale.status_code == 400 and "Страница устарела" in stale.text
    unknown = client.get("/p/")
    assert unknown.status_code == 404


def test_the_json_api_speaks_english_unless_asked_for_russian_and_staff_pages_english(
    client: FlaskClient, db: Any
) -> None:
    api = client.post("/api/v1/visitors/code", json={"phone": "hello"})
    assert api.status_code == 400 and api.json["error"] == "This does not look like a phone number."
    # A city app that asks for Russian gets the Russian sentence; the field and status stay.
    russian = client.post(
        "/api/v1/visitors/code", json={"phone": "hello"}, headers={"Accept-Language": "ru-RU,ru;q=0.9"}
    )
    assert russian.json == {"error": "Это не похоже на номер телефона.", "status": 400, "field": "phone"}
    english = client.post("/api/v1/visitors/code", json={"phone": "hello"}, headers={"Accept-Language": "en,ru;q=0.5"})
    assert english.json["error"] == "This does not look like a phone number."
    outside = client.get("/no-such-page", headers={"Accept": "text/html"})  # no visitors' page: English
    assert outside.status_code == 404 and "Not found" in outside.text and '<html lang="en">' in outside.text
