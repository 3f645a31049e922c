"""`checkin venues import` and `checkin venues posters`: all-or-nothing import, batch rendering."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pypdf
from flask.testing import FlaskCliRunner

from app.models import Operator, Venue
from app.services import venue_imports
from tests import factories

GOOD = """name,address,kind,timezone,default_stay_minutes,capacity,entrances
Кафе «Север»,Ленинский пр. 1,cafe,Europe/Moscow,60,40,Вход
مقهى الشرق,ул. Арабская 2,cafe,Asia/Dubai,90,,Main;Terrace
"""


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "venues.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_creates_every_venue_with_its_entrances(
    runner: FlaskCliRunner, operator: Operator, db: Any, tmp_path: Path
) -> None:
    result = runner.invoke(
        args=["venues", "import", _csv(tmp_path, GOOD), "--organisation", str(operator.organisation_id)]
    )
    assert result.exit_code == 0, result.output
    assert "imported 2 venue(s)" in result.output
    created = db.session.query(Venue).order_by(Venue.id).all()
    assert [v.name for v in created] == ["Кафе «Север»", "مقهى الشرق"]
    assert [e.name for e in created[1].entrances] == ["Main", "Terrace"] and created[1].capacity is None
    assert created[1].timezone == "Asia/Dubai" and created[1].default_stay_minutes == 90


def test_a_bad_row_refuses_the_whole_file_with_its_line_number(
    runner: FlaskCliRunner, operator: Operator, db: Any, tmp_path: Path
) -> None:
    rows = "".join(f"Кафе {i},,cafe,Europe/Moscow,60,10,\n" for i in range(14))
    text = GOOD + rows + "Кафе плохое,,cafe,Europe/Moscow,5,10,\nКафе 2,,cafe,Mars/Olympus,60,,\n"
    result = runner.invoke(
        args=["venues", "import", _csv(tmp_path, text), "--organisation", str(operator.organisation_id)]
    )
    assert result.exit_code == 1
    assert "line 18: default_stay_minutes must be between 15 and 1440" in result.output
    assert "line 19: timezone: unknown time zone 'Mars/Olympus'" in result.output
    assert "nothing was imported" in result.output
    assert db.session.query(Venue).count() == 0


def test_skip_bad_rows_imports_the_good_ones(
    runner: FlaskCliRunner, operator: Operator, db: Any, tmp_path: Path
) -> None:
    text = GOOD + ",no name,cafe,Europe/Moscow,60,,\nКафе,,spaceship,Europe/Moscow,60,,\n"
    result = runner.invoke(
        args=[
            "venues",
            "import",
            _csv(tmp_path, text),
            "--organisation",
            str(operator.organisation_id),
            "--skip-bad-rows",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "skipped line 4: name is required" in result.output
    assert "skipped line 5: kind must be one of" in result.output
    assert db.session.query(Venue).count() == 2


def test_import_refuses_unknown_columns_and_unknown_organisations(
    runner: FlaskCliRunner, operator: Operator, tmp_path: Path
) -> None:
    bad_header = runner.invoke(
        args=[
            "venues",
            "import",
            _csv(tmp_path, "name,colour\nX,red\n"),
            "--organisation",
            str(operator.organisation_id),
        ]
    )
    assert bad_header.exit_code == 1 and "line 1: unknown column(s) colour" in bad_header.output
    nobody = runner.invoke(args=["venues", "import", _csv(tmp_path, GOOD), "--organisation", "999999"])
    assert nobody.exit_code == 1 and "No organisation with id 999999" in nobody.output


def test_quoted_multiline_fields_keep_line_numbers_right() -> None:
    text = 'name,address,default_stay_minutes\n"Кафе","Ленинский\nпр. 1",60\nКафе 2,,9999\n'
    good, bad = venue_imports.read_rows(text)
    assert len(good) == 1 and [str(e) for e in bad] == ["line 4: default_stay_minutes must be between 15 and 1440"]


def test_posters_batch_as_pdf_and_zip(runner: FlaskCliRunner, operator: Operator, tmp_path: Path) -> None:
    factories.venue(operator.organisation, name="Кафе «Север»", halls=("Зал",))
    factories.venue(operator.organisation, name="Кафе «Юг»")
    pdf_path = tmp_path / "all.pdf"
    result = runner.invoke(
        args=["venues", "posters", "--organisation", str(operator.organisation_id), "--out", str(pdf_path)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 poster(s)" in result.output
    reader = pypdf.PdfReader(io.BytesIO(pdf_path.read_bytes()))
    assert len(reader.pages) == 3 and "Кафе «Север»" in reader.pages[0].extract_text()
    zip_path = tmp_path / "all.zip"
    result = runner.invoke(
        args=[
            "venues",
            "posters",
            "--organisation",
            str(operator.organisation_id),
            "--out",
            str(zip_path),
            "--size",
            "A5",
        ]
    )
    assert result.exit_code == 0, result.output
    assert len(zipfile.ZipFile(zip_path).namelist()) == 3
    wrong = runner.invoke(
        args=["venues", "posters", "--organisation", str(operator.organisation_id), "--out", "x.docx"]
    )
    assert wrong.exit_code == 1 and "must end in .pdf or .zip" in wrong.output


def test_rotate_poster_key_keeps_printed_posters_valid(runner: FlaskCliRunner, db: Any, now: Any) -> None:
    from app.services import posters

    entrance = factories.venue().entrances[0]
    old_version, token = posters.issue_poster(entrance, now)
    result = runner.invoke(args=["venues", "rotate-poster-key"])
    assert result.exit_code == 0 and "new poster signing key" in result.output
    assert posters.resolve_poster_token(token, now).poster_version.id == old_version.id
    assert posters.issue_poster(entrance, now)[0].signing_key_id != old_version.signing_key_id
