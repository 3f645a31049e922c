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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select

from app.models import Case, Checkin, Exposure, Organisation, Person, Venue
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


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def load_workload(session: Any, directory: Path) -> dict[int, int]:
    """Bulk-insert venues, visitors and check-ins; returns workload visitor id -> person id."""
    conn = session.connection()
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
    person_ids = (
        conn.execute(
            insert(Person.__table__).returning(Person.__table__.c.id, sort_by_parameter_order=True),
            [{"preferred_language": "ru", "timezone": "Europe/Moscow", "created_at": FROZEN_NOW} for _ in visitors],
        )
        .scalars()
        .all()
    )
    person_of = dict(zip(visitors, person_ids, strict=True))
    batch: list[dict[str, Any]] = []
    for _cid, visitor, venue, t_in, t_out in _rows(directory / "checkins.csv"):
        start, end = datetime.fromisoformat(t_in), datetime.fromisoformat(t_out)
        batch.append({"person_id": person_of[int(visitor)], "venue_id": venue_ids[int(venue) - 1], "party_size": 1,
                      "source": "poster", "checked_in_at": start, "planned_checkout_at": end, "checked_out_at": end,
                      "created_at": start})  # fmt: skip
        if len(batch) == 20_000:
            conn.execute(insert(Checkin.__table__), batch)
            batch = []
    if batch:
        conn.execute(insert(Checkin.__table__), batch)
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
