"""Property-based fuzzing of every parser of outside input: each refuses with its own error, never another.

Poster tokens are fuzzed with the poster tests (tests/app/operators/).
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.errors import ValidationError
from app.extensions import limiter
from app.models import Case, Checkin, Person
from app.services import case_imports, people, sms_commands, venue_imports
from app.views import kiosk_api
from tests import factories
from tests.app.kiosks.conftest import EnrolledKiosk, enrol_kiosk, scanner_item
from tests.app.officials.helpers import make_official, post, sign_in
from venue_kiosk import codes

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
# Requests go through the whole app and the database: fewer examples keep the suite fast.
FUZZ_HTTP = settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))

VENUE_HEADER = "name,address,kind,timezone,capacity,default_stay_minutes,entrances\n"
CASE_HEADER = "lab_reference,phone,tested_on,symptom_onset,isolated_on\n"

# Text that looks a little like what each parser expects, so the fuzzer gets past the first check.
digits_and_separators = st.text(alphabet="0123456789 -–—.,/+()OUTВЫХОДёЁ\t\n\x00", max_size=40)
small_cells = st.one_of(
    st.text(max_size=30),
    st.text(alphabet='0123456789-+",;\n\r\x00 abc', max_size=30),
    st.sampled_from(["", "2026-11-20", "+79161234567", "8 916 123-45-67", "-1", "1e9", "Europe/Moscow", "cafe"]),
)
# Past the csv module's field size limit (131072 characters).
any_cells = small_cells | st.integers(min_value=140_000, max_value=200_000).map(lambda n: "x" * n)


def _csv_rows(header: str, columns: int, cells: st.SearchStrategy[str] = any_cells) -> st.SearchStrategy[str]:
    row = st.lists(cells, min_size=0, max_size=columns + 2).map(
        lambda cells: ",".join(cells)  # deliberately unquoted: quotes and separators come from the cells
    )
    return st.lists(row, max_size=5).map(lambda rows: header + "\n".join(rows))


def _decoded(raw: bytes) -> str | None:
    """What the import entry points do with an upload: UTF-8 or a refusal."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# -- SMS commands ---------------------------------------------------------------------------------


@given(text=st.one_of(st.text(max_size=400), digits_and_separators))
@example(text="")
@example(text="123 456 789 99999999999999999999")
@example(text="١٢٣٤٥٦٧٨٩")  # Arabic-Indic digits: isdigit() but not ASCII
@FUZZ
def test_sms_command_parser_never_raises_and_returns_a_known_action(text: str) -> None:
    command = sms_commands.parse(text)
    assert command.action in {"checkin", "checkout", "help", "bad_party", "malformed"}
    if command.action == "checkin":
        assert len(command.code) == 9 and command.code.isascii() and command.code.isdigit()
        assert command.party_size >= 1


# -- phone numbers --------------------------------------------------------------------------------


@given(raw=st.one_of(st.text(max_size=60), digits_and_separators, st.just("+7" + "9" * 40)))
@example(raw="+7 916 123-45-67")
@example(raw="\x00")
@FUZZ
def test_phone_parser_returns_e164_or_raises_validation_error(raw: str) -> None:
    try:
        phone = people.normalise_phone(raw)
    except ValidationError:
        return
    assert phone.startswith("+") and phone[1:].isdigit()


# -- venue CSV imports ----------------------------------------------------------------------------


@given(raw=st.one_of(st.binary(max_size=400), _csv_rows(VENUE_HEADER, 7).map(str.encode)))
@example(raw=b"\xff\xfe\xfaname\n")
@example(raw=b"name\n" + b"x" * 200_000 + b"\n")
@example(raw=b'name\n"unterminated')
@FUZZ
def test_venue_csv_reader_reports_row_errors_and_never_raises(raw: bytes) -> None:
    text = _decoded(raw)
    if text is None:
        return  # the CLI refuses a file that is not UTF-8 before any parsing
    rows, errors = venue_imports.read_rows(text)
    for error in errors:
        assert isinstance(error.line, int) and error.message
    for row in rows:
        assert row.fields["name"].strip()


@given(raw=st.one_of(st.binary(max_size=400), _csv_rows(CASE_HEADER, 5).map(str.encode)))
@example(raw=CASE_HEADER.encode() + b"LAB-1," + b"9" * 200_000 + b",2026-11-20,,\n")
@example(raw=CASE_HEADER.encode() + b'"LAB-1\n')
@example(raw=CASE_HEADER.encode() + b"LAB-1,+79161234567,2026-11-20,,,,,,\n")
@FUZZ
def test_case_csv_import_reports_row_errors_and_never_raises(app: Flask, db: Any, now: datetime, raw: bytes) -> None:
    text = _decoded(raw)
    if text is None:
        return
    savepoint = db.session.begin_nested()
    try:
        result = case_imports.import_cases(text, now=now, lead_days=2, issuer="")
    except ValidationError as exc:
        assert exc.message  # a bad header: one readable refusal for the whole file
        return
    finally:
        savepoint.rollback()
    for line, message in result.errors:
        assert isinstance(line, int) and message


@pytest.fixture
def official_client(client: FlaskClient, db: Any, now: datetime) -> FlaskClient:
    limiter.reset()
    sign_in(client, make_official(now))
    return client


# Small cells only: the test client spools bodies past 500 kB into temporary files it never closes.
@given(raw=st.one_of(st.binary(max_size=300), _csv_rows(CASE_HEADER, 5, small_cells).map(str.encode)))
@example(raw=b"\xff\xfe\xfa")
@example(raw=CASE_HEADER.encode() + b"LAB-1," + b"9" * 200_000 + b",2026-11-20,,\n")
@example(raw=CASE_HEADER.encode() + b"\x00\n")  # PostgreSQL refuses NUL in text: must be a row error
@FUZZ_HTTP
def test_case_import_upload_answers_200_or_400_and_writes_nothing_on_refusal(
    official_client: FlaskClient, db: Any, raw: bytes
) -> None:
    before = db.session.scalar(select(func.count()).select_from(Case))
    response = post(official_client, "/official/import", {"file": (io.BytesIO(raw), "results.csv")},
                    page="/official/import")  # fmt: skip
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 400:
        assert db.session.scalar(select(func.count()).select_from(Case)) == before


# -- kiosk batches --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
item_fields = st.fixed_dictionaries(
    {},
    optional={
        "client_id": st.one_of(json_values, st.uuids().map(str), st.just("x" * 65)),
        "method": st.one_of(json_values, st.sampled_from(["kiosk_scanner", "ble"])),
        "token": st.one_of(json_values, st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1, max_size=64)),
        "observed_at": st.one_of(
            json_values,
            st.sampled_from(["2026-11-20T11:30:00+00:00", "2026-11-20T11:30:00", "9999-12-31T23:59:59+14:00"]),
        ),
    },
)


@pytest.fixture
def fuzz_kiosk(db: Any, monkeypatch: pytest.MonkeyPatch, now: datetime) -> EnrolledKiosk:
    limiter.reset()
    monkeypatch.setattr(kiosk_api, "utcnow", lambda: now)
    enrolled = enrol_kiosk(factories.venue(name="Министерство, корпус 1"), now - timedelta(hours=1))
    db.session.commit()
    return enrolled


def _counts(db: Any) -> tuple[int, int]:
    return (
        db.session.scalar(select(func.count()).select_from(Checkin)),
        db.session.scalar(select(func.count()).select_from(Person)),
    )


@given(
    body=st.one_of(
        json_values, st.fixed_dictionaries({"items": st.one_of(json_values, st.lists(item_fields, max_size=5))})
    )
)
@example(
    body={"items": [{"client_id": "a", "method": ["ble"], "token": "x", "observed_at": "2026-11-20T11:30:00+00:00"}]}
)
@example(body={"items": [{"client_id": "a", "method": {"x": 1}, "token": "x"}]})
@FUZZ_HTTP
def test_kiosk_batches_of_arbitrary_json_answer_200_or_400_and_write_nothing_for_rejected_items(
    client: FlaskClient, db: Any, fuzz_kiosk: EnrolledKiosk, body: Any
) -> None:
    before = _counts(db)
    response = client.post("/api/v1/kiosk/checkins", data=json.dumps(body), headers={
        **fuzz_kiosk.headers, "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code in (200, 400, 401), response.status_code
    if response.status_code != 200:
        assert _counts(db) == before
        return
    statuses = [r["status"] for r in response.get_json()["results"]]
    assert set(statuses) <= {"accepted", "duplicate", "rejected"}
    if "accepted" not in statuses:
        assert _counts(db) == before


def test_a_real_scanner_item_beside_hostile_ones_is_the_only_one_written(
    client: FlaskClient, db: Any, fuzz_kiosk: EnrolledKiosk, now: datetime
) -> None:
    visitor = factories.person()
    db.session.commit()
    good = scanner_item(visitor, now - timedelta(minutes=1))
    hostile = [{"client_id": str(uuid.uuid4()), "method": ["ble"], "token": good["token"]}, 42, None, "x"]
    before = _counts(db)
    response = client.post("/api/v1/kiosk/checkins", json={"items": [*hostile, good]}, headers=fuzz_kiosk.headers)
    assert response.status_code == 200
    assert [r["status"] for r in response.get_json()["results"]] == ["rejected"] * 4 + ["accepted"]
    assert _counts(db) == (before[0] + 1, before[1])


# -- scanned codes and Bluetooth payloads ---------------------------------------------------------

personal_code_like = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefgh ioluIOLUЙЦУКЕН\t", max_size=40)


@given(raw=st.one_of(st.text(max_size=60), personal_code_like))
@example(raw="ß" * 10)
@FUZZ
def test_personal_code_parser_raises_only_code_errors(raw: str) -> None:
    try:
        parsed = codes.parse_personal_code(raw)
    except codes.CodeError:
        return
    assert parsed.text == codes.normalise_scanned(raw)


@given(payload=st.one_of(st.binary(max_size=64), st.binary(min_size=20, max_size=24)))
@FUZZ
def test_ble_payload_parser_raises_only_code_errors(payload: bytes) -> None:
    try:
        token = codes.parse_ble_payload(payload)
    except codes.CodeError:
        return
    assert token.raw == payload


@given(text=st.one_of(st.text(max_size=60), st.text(alphabet="ABCabc0123456789-_=", max_size=40)))
@FUZZ
def test_ble_token_text_and_kiosk_code_parsers_raise_only_code_errors(text: str) -> None:
    for parse in (codes.parse_ble_token_text, codes.parse_kiosk_code):
        with contextlib.suppress(codes.CodeError):
            parse(text)
