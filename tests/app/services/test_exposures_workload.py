"""Ground truth: the database matcher reproduces the shared benchmark's reference overlap counts.

The workload is bulk-loaded into the test database; visitor 1 is the case. With the tail switched off
and a window covering all 14 days, the rules reduce to the reference's plain overlap.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, text

from app.models import Case, Exposure, Organisation, Person, Venue
from app.services import matching
from app.services.exposures import candidate_stays, case_stays, match_case
from app.services.matching import MatchRules
from tests.conftest import FROZEN_NOW

BENCH_DIR = Path(os.environ.get("BENCH_DIR", Path(__file__).resolve().parents[3].parent / "shared" / "bench"))
RULES = MatchRules(tail=timedelta(0), high_risk_overlap=timedelta(minutes=15), lead_days=15)
MSK = ZoneInfo("Europe/Moscow")

pytestmark = pytest.mark.skipif(
    not (BENCH_DIR / "gen_workload.py").is_file(), reason=f"shared benchmark scripts not found in {BENCH_DIR}"
)


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH_DIR / script), *args], capture_output=True, text=True,
                          check=True, timeout=900)  # fmt: skip
    return done.stdout


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="") as handle:
        yield from csv.reader(handle)


def _stored_time(iso: str, dialect: str) -> str:
    """A workload time (ISO 8601 in UTC) as the driver takes it: SQLite stores UTCDateTime as naive
    UTC text, PostgreSQL parses the ISO form itself."""
    if dialect != "sqlite":
        return iso
    if len(iso) == 25 and iso.endswith("+00:00"):  # the generator's form, without microseconds
        return f"{iso[:10]} {iso[11:19]}.000000"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _secondary_indexes(conn: Any, table: str) -> list[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
    else:
        query = (
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t AND indexname NOT IN"
            " (SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass))"
        )
    return [tuple(row) for row in conn.execute(text(query), {"t": table})]


_CHECKIN_COLUMNS = (
    "person_id, venue_id, party_size, source, checked_in_at, planned_checkout_at, checked_out_at, created_at"
)


def load_workload(
    session: Any, directory: Path, *, rebuild_indexes: bool = False, progress: Any = None
) -> dict[int, int]:
    """Bulk-load venues, visitors and check-ins; returns workload visitor id -> person id.

    Check-ins go through the driver (PostgreSQL: COPY; SQLite: executemany of plain tuples), streamed
    from the file. ``rebuild_indexes`` drops the check-ins' secondary indexes for the load and builds
    them afterwards, which is what makes ten million rows practical. ``progress`` is called with the
    number of check-ins loaded so far.
    """
    conn = session.connection()
    dialect = conn.dialect.name
    org_id = conn.execute(insert(Organisation.__table__).returning(Organisation.__table__.c.id),
                          [{"name": "Workload", "created_at": FROZEN_NOW}]).scalar_one()  # fmt: skip
    venue_rows = [
        {"organisation_id": org_id, "name": name, "short_code": f"9{int(vid):08d}", "timezone": "Europe/Moscow",
         "default_stay_minutes": 180, "address": "", "kind": "other", "created_at": FROZEN_NOW}
        for vid, _code, name in _rows(directory / "venues.csv")
    ]  # fmt: skip
    venue_ids = (
        conn.execute(insert(Venue.__table__).returning(Venue.__table__.c.id, sort_by_parameter_order=True), venue_rows)
        .scalars()
        .all()
    )
    visitors = [int(row[0]) for row in _rows(directory / "visitors.csv")]
    before = conn.execute(select(func.coalesce(func.max(Person.id), 0))).scalar_one()
    conn.execute(
        insert(Person.__table__),
        [{"preferred_language": "ru", "timezone": "Europe/Moscow", "created_at": FROZEN_NOW} for _ in visitors],
    )
    person_ids = conn.execute(select(Person.id).where(Person.id > before).order_by(Person.id)).scalars().all()
    person_of = dict(zip(visitors, person_ids, strict=True))
    indexes = _secondary_indexes(conn, "checkins") if rebuild_indexes else []
    for name, _definition in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    raw = conn.connection.driver_connection
    count = 0

    def tuples() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for _cid, visitor, venue, t_in, t_out in _rows(directory / "checkins.csv"):
            start, end = _stored_time(t_in, dialect), _stored_time(t_out, dialect)
            yield (person_of[int(visitor)], venue_ids[int(venue) - 1], 1, "poster", start, end, end, start)
            count += 1
            if progress is not None and count % 100_000 == 0:
                progress(count)

    if dialect == "postgresql":
        with raw.cursor().copy(f"COPY checkins ({_CHECKIN_COLUMNS}) FROM STDIN") as copy:
            for row in tuples():
                copy.write_row(row)
    else:
        raw.cursor().executemany(f"INSERT INTO checkins ({_CHECKIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuples())
    for _name, definition in indexes:
        conn.execute(text(definition))
    return person_of


@pytest.mark.parametrize(
    ("generator_args", "pairs", "people"),
    [
        pytest.param((), 41, 41, id="100k"),
        pytest.param(("--checkins", "1000000", "--visitors", "100000"), 512, 509, id="1M", marks=pytest.mark.slow),
    ],
)
def test_the_database_matcher_finds_exactly_the_reference_contacts(
    app: Any, db: Any, tmp_path: Path, generator_args: tuple[str, ...], pairs: int, people: int
) -> None:
    _run("gen_workload.py", str(tmp_path), "--now", "2026-11-20T12:00:00", *generator_args)
    reference = _run("reference_overlap.py", str(tmp_path))
    assert f"overlapping_pairs={pairs} distinct_contacts={people}" in reference, reference
    person_of = load_workload(db.session, tmp_path)
    case = Case(person_id=person_of[1], tested_on=date(2026, 11, 20), created_at=FROZEN_NOW)
    db.session.add(case)
    db.session.flush()

    match_case(case.id, now=FROZEN_NOW, rules=RULES, tz=MSK)

    exposed = db.session.execute(
        select(func.count(), func.count(func.distinct(Exposure.person_id))).where(Exposure.case_id == case.id)
    ).one()
    # Each pair is one other check-in here (no check-in overlaps two of the case's visits).
    assert tuple(exposed) == (pairs, people)
    window = (case.window_starts_at, case.window_ends_at)
    stays = case_stays(person_of[1], window, FROZEN_NOW)
    assert len(stays) == 10
    contacts = matching.find_contacts(stays, candidate_stays(stays, RULES, FROZEN_NOW, _halls()), RULES)
    assert len(contacts) == pairs
    assert re.search(r"seconds=", reference)


def _halls() -> Any:
    from app.services.exposures import _Halls

    return _Halls()
