"""Classic attacks through the real routes: SQL injection, spreadsheet formulas, oversized and malformed
bodies, path tricks in file names, NUL bytes. Refused input gets a clear 4xx and writes nothing."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask, g
from flask.testing import FlaskClient, FlaskCliRunner
from markupsafe import escape
from sqlalchemy import inspect, select, text

from app.extensions import limiter
from app.models import Case, Entrance, Operator, Organisation, SystemSwitch, Venue
from app.services import accounts, cases
from app.services.exposures import match_case, rules_from_config
from app.services.outbreak_stats import escape_cell
from tests import factories
from tests.app.kiosks.conftest import EnrolledKiosk, enrol_kiosk
from tests.app.officials.helpers import dashboard_clock_at, make_official
from tests.app.officials.helpers import post as official_post
from tests.app.officials.helpers import sign_in as official_sign_in
from tests.app.operators.conftest import signed_in_client
from tests.support.forms import csrf_token

HOSTILE_TEXTS = [
    "' OR 1=1 --",
    '"; DROP TABLE checkins; --',
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "<script>alert(1)</script>",
]
PATH_TRICKS = ["../../etc/passwd", "..\\..\\boot.ini", "CON", "NUL.txt", "/etc/shadow", "C:\\Windows\\win.ini"]
SAFE_ZIP_NAME = re.compile(r"\d{4}-[a-z0-9-]+\.pdf")
WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
THREE_MB = 3 * 1024 * 1024


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    limiter.reset()


@pytest.fixture
def operator(db: Any) -> Operator:
    owner = accounts.create_organisation_with_owner(
        "Сеть кофеен «Ромашка»", "owner@romashka.example", "correct horse battery"
    )
    db.session.commit()
    return owner


@pytest.fixture
def op_client(app: Flask, operator: Operator) -> FlaskClient:
    return signed_in_client(app, operator)


def row_counts(db: Any) -> dict[str, int]:
    """Rows per table: what 'nothing written' is checked against (and proof no table was dropped)."""
    conn = db.session.connection()
    return {
        table: conn.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
        for table in inspect(conn).get_table_names()
        if table != "alembic_version"
    }


def _escaped_in_page(value: str, page: str) -> bool:
    """The value appears HTML-escaped, and never raw where escaping changes it."""
    escaped = str(escape(value))
    if escaped != value:
        assert value not in page, f"{value!r} reached the page unescaped"
    return escaped in page


def _forget_cached_csrf_token() -> None:
    # Requests share the test's app context, where Flask-WTF caches the last client's token in g.
    g.pop("csrf_token", None)


def _new_venue(client: FlaskClient, **fields: Any) -> Any:
    page = client.get("/operator/venues/new")
    form = {"name": "Кафе", "address": "", "kind": "cafe", "timezone": "Europe/Moscow", "default_stay_minutes": "60",
            "capacity": "", "entrances": "", "csrf_token": csrf_token(page.text), **fields}  # fmt: skip
    return client.post("/operator/venues/new", data=form)


# -- SQL injection and spreadsheet formulas -------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_venue_and_entrance_names_are_stored_literally_shown_escaped_and_exported_escaped(
    app: Flask, db: Any, op_client: FlaskClient, now: datetime, hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard_clock_at(monkeypatch, now)
    tables_before = set(row_counts(db))
    created = _new_venue(op_client, name=hostile, entrances=hostile)
    assert created.status_code in (302, 303), created.status_code
    venue = db.session.scalar(select(Venue).where(Venue.name == hostile))
    assert venue is not None and [e.name for e in venue.entrances] == [hostile]
    assert set(row_counts(db)) == tables_before  # nothing was dropped
    page = op_client.get(created.headers["Location"])
    assert page.status_code == 200 and _escaped_in_page(hostile, page.text)

    # Exposures at this venue put it into the officials' dashboard and its CSV export.
    sick, other = factories.person(), factories.person()
    factories.checkin(sick, venue, now - timedelta(hours=6))
    factories.checkin(other, venue, now - timedelta(hours=6) + timedelta(minutes=10))
    case = factories.case(sick, now, now)
    match_case(case.id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("Europe/Moscow"))
    db.session.commit()
    official = app.test_client()
    _forget_cached_csrf_token()
    assert official_sign_in(official, make_official(now)).status_code == 302
    dashboard = official.get("/official/dashboard")
    assert dashboard.status_code == 200 and _escaped_in_page(hostile, dashboard.text)
    exported = official.get("/official/dashboard.csv")
    assert exported.status_code == 200
    rows = [r for r in csv.reader(io.StringIO(exported.text)) if r and r[0] == str(venue.id)]
    assert rows == [[str(venue.id), escape_cell(hostile), "1"]]
    assert not rows[0][1].startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_organisation_names_are_stored_literally_and_shown_escaped(app: Flask, db: Any, hostile: str) -> None:
    client = app.test_client()
    page = client.get("/operator/signup")
    email = f"owner{HOSTILE_TEXTS.index(hostile)}@hostile.example"
    signed_up = client.post("/operator/signup", data={"csrf_token": csrf_token(page.text), "organisation": hostile,
                                                      "email": email, "password": "correct horse battery"})  # fmt: skip
    assert signed_up.status_code in (302, 303), signed_up.status_code
    assert db.session.scalar(select(Organisation).where(Organisation.name == hostile)) is not None
    home = client.get("/operator/")
    assert home.status_code == 200 and _escaped_in_page(hostile, home.text)


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_text_typed_by_officials_is_stored_literally_and_shown_escaped(
    app: Flask, client: FlaskClient, db: Any, now: datetime, hostile: str
) -> None:
    official_sign_in(client, make_official(now))  # a supervisor: may also stop all sending
    recorded = cases.record_case(phone="+79165550101", tested_on=now.date(), now=now, lead_days=2)
    db.session.commit()
    reason = f"lab {hostile}"  # the annul form needs a few characters of reason
    annulled = official_post(client, f"/official/cases/{recorded.case.id}/annul", {"reason": reason})
    assert annulled.status_code in (302, 303), annulled.status_code
    db.session.expire_all()
    assert db.session.get(Case, recorded.case.id).annul_reason == reason
    assert _escaped_in_page(reason, client.get(f"/official/cases/{recorded.case.id}").text)

    stopped = official_post(client, "/official/switch", {"state": "on", "reason": hostile})
    assert stopped.status_code in (302, 303), stopped.status_code
    assert _escaped_in_page(hostile, client.get("/official/dashboard").text)


# -- oversized bodies -----------------------------------------------------------------------------


def test_an_oversized_form_is_refused_with_413_and_writes_nothing(db: Any, op_client: FlaskClient) -> None:
    before = row_counts(db)
    response = _new_venue(op_client, name="x" * THREE_MB)
    assert response.status_code == 413
    assert row_counts(db) == before


@pytest.fixture
def kiosk(db: Any, now: datetime) -> EnrolledKiosk:
    enrolled = enrol_kiosk(factories.venue(name="Министерство, корпус 1"), now - timedelta(hours=1))
    db.session.commit()
    return enrolled


def test_an_oversized_kiosk_batch_is_refused_with_413_and_writes_nothing(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk
) -> None:
    before = row_counts(db)
    items = [{"client_id": f"c{i}", "method": "ble", "token": "x" * 60} for i in range(THREE_MB // 60)]
    response = client.post("/api/v1/kiosk/checkins", json={"items": items}, headers=kiosk.headers)
    assert response.status_code == 413
    assert row_counts(db) == before


# -- malformed UTF-8 ------------------------------------------------------------------------------


# Werkzeug drops a urlencoded body that is not UTF-8 as a whole, so the request arrives without its
# fields: the CSRF check, or the view's own validation where there is none, refuses it.
def test_malformed_utf8_in_a_form_field_is_refused_and_writes_nothing(db: Any, op_client: FlaskClient) -> None:
    token = csrf_token(op_client.get("/operator/venues/new").text)
    before = row_counts(db)
    body = (
        b"csrf_token=" + token.encode() + b"&kind=cafe&timezone=Europe/Moscow&default_stay_minutes=60&name=\xff\xfe\xfa"
    )
    response = op_client.post("/operator/venues/new", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.status_code
    assert row_counts(db) == before


def test_malformed_utf8_in_an_incoming_sms_is_refused_and_writes_nothing(
    app: Flask, client: FlaskClient, db: Any
) -> None:
    before = row_counts(db)
    secret = app.config["SMS_INBOUND_SECRET"].encode()
    body = b"secret=" + secret + b"&from=%2B79161234567&text=\xff\xfe\xfa"
    response = client.post("/gateway/sms/incoming", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in (400, 403), response.status_code
    assert row_counts(db) == before


def test_malformed_utf8_in_a_json_body_is_refused_and_writes_nothing(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk
) -> None:
    before = row_counts(db)
    response = client.post(
        "/api/v1/kiosk/checkins",
        data=b'{"items": [{"client_id": "\xff\xfe\xfa", "method": "ble", "token": "x"}]}',
        headers={**kiosk.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert row_counts(db) == before


# -- path tricks in file names --------------------------------------------------------------------


def _assert_safe_names(names: list[str]) -> None:
    for name in names:
        assert SAFE_ZIP_NAME.fullmatch(name), name
        assert name.split(".", 1)[0] not in WINDOWS_DEVICES, name


def test_path_tricks_in_venue_names_give_safe_names_in_the_poster_zip(
    app: Flask, db: Any, operator: Operator, op_client: FlaskClient
) -> None:
    for name in PATH_TRICKS:
        assert _new_venue(op_client, name=name, entrances=name).status_code in (302, 303)
    response = op_client.get("/operator/posters.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = archive.namelist()
    assert len(names) == len(PATH_TRICKS)
    _assert_safe_names(names)
    entrance = db.session.scalar(select(Entrance).join(Venue).where(Venue.name == "../../etc/passwd"))
    single = op_client.get(f"/operator/entrances/{entrance.id}/poster.pdf")
    disposition = single.headers["Content-Disposition"]
    assert single.status_code == 200 and ".." not in disposition and "/" not in disposition.split("filename=")[1]


def test_the_poster_command_writes_only_the_file_it_was_asked_for(
    db: Any, operator: Operator, op_client: FlaskClient, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    for name in PATH_TRICKS:
        _new_venue(op_client, name=name, entrances=name)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner.invoke(args=["venues", "posters", "--organisation", str(operator.organisation_id),
                                 "--out", str(out_dir / "posters.zip")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["out", "out/posters.zip"]
    _assert_safe_names(zipfile.ZipFile(out_dir / "posters.zip").namelist())


# -- NUL bytes ------------------------------------------------------------------------------------


def _no_nul_stored(db: Any) -> None:
    # Checked in Python: SQLite's LIKE stops reading a pattern at a NUL, so it would match every row.
    db.session.expire_all()
    for column in (Venue.name, Venue.address, Entrance.name, Organisation.name, SystemSwitch.reason):
        stored = [value for value in db.session.scalars(select(column)) if "\x00" in (value or "")]
        assert stored == [], f"{column}: {stored!r}"


@pytest.mark.parametrize("field", ["name", "entrances", "address"])
def test_a_nul_byte_in_a_venue_form_is_refused_or_stripped(db: Any, op_client: FlaskClient, field: str) -> None:
    before = row_counts(db)
    response = _new_venue(op_client, **{field: "Кафе\x00«Тест»"})
    assert response.status_code in (302, 303, 400), response.status_code
    if response.status_code == 400:
        assert row_counts(db) == before
    _no_nul_stored(db)


def test_a_nul_byte_in_the_organisation_name_is_refused_or_stripped(app: Flask, db: Any) -> None:
    client = app.test_client()
    page = client.get("/operator/signup")
    before = row_counts(db)
    response = client.post("/operator/signup", data={"csrf_token": csrf_token(page.text), "organisation": "Кафе\x00",
                                                     "email": "nul@hostile.example",
                                                     "password": "correct horse battery"})  # fmt: skip
    assert response.status_code in (302, 303, 400), response.status_code
    if response.status_code == 400:
        assert row_counts(db) == before
    _no_nul_stored(db)


@pytest.mark.parametrize(("path", "field"), [("/signin/code", "phone"), ("/official/cases/new", "phone"),
                                             ("/official/switch", "reason")])  # fmt: skip
def test_a_nul_byte_in_other_text_fields_never_answers_5xx(
    app: Flask, client: FlaskClient, db: Any, now: datetime, path: str, field: str
) -> None:
    official_sign_in(client, make_official(now))
    page = "/official/cases/new" if path.startswith("/official") else "/"
    token = csrf_token(client.get(page).text) if path.startswith("/official") else _visitor_token(client, db, now)
    data = {"csrf_token": token, field: "+7916\x001234567", "tested_on": now.date().isoformat(), "state": "on",
            "next": "/"}  # fmt: skip
    response = client.post(path, data=data)
    assert response.status_code < 500, response.status_code
    _no_nul_stored(db)


def test_a_kiosk_client_id_with_a_nul_or_control_character_is_a_rejected_item(
    client: FlaskClient, db: Any, now: datetime
) -> None:
    # Such an id reached PostgreSQL (which cannot store U+0000 in text) and answered 500.
    from tests.app.kiosks.conftest import scanner_item

    kiosk = enrol_kiosk(factories.venue(), now - timedelta(hours=1))
    person = factories.person()
    items = [scanner_item(person, now - timedelta(minutes=1), client_id=bad) for bad in ("kiosk\x00item", "a\nb")]
    db.session.commit()
    before = row_counts(db)
    response = client.post("/api/v1/kiosk/checkins", json={"items": items}, headers=kiosk.headers)
    assert response.status_code == 200, response.json
    assert [(r["status"], r["client_id"]) for r in response.json["results"]] == [("rejected", None)] * 2
    assert all(r["reason"].startswith("client_id must be a printable text") for r in response.json["results"])
    assert row_counts(db) == before


def test_json_nested_deeper_than_the_parser_goes_is_a_clear_400(client: FlaskClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/checkins", "/api/v1/visitors/code", "/api/v1/operator/session"):
        response = client.post(path, data=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.status_code)
        assert "JSON object" in response.json["error"]


def _visitor_token(client: FlaskClient, db: Any, now: datetime) -> str:
    from app.services import posters

    venue = factories.venue()
    _, token = posters.issue_poster(venue.entrances[0], now)
    db.session.commit()
    return csrf_token(client.get(f"/p/{token}").text)
