"""Ground truth: find_contacts reproduces the shared benchmark's reference overlap counts."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.services.matching import MatchRules, Stay, find_contacts

# The shared benchmark lives beside the repository (PRODUCT.md, "Benchmark data").
BENCH_DIR = Path(os.environ.get("BENCH_DIR", Path(__file__).resolve().parents[3].parent / "shared" / "bench"))
NOW = "2026-11-20T12:00:00"
CASE_PERSON = 1  # the generator makes visitor 1 the positive case

pytestmark = pytest.mark.skipif(
    not (BENCH_DIR / "gen_workload.py").is_file(),
    reason=f"shared benchmark scripts not found in {BENCH_DIR}",
)


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return result.stdout


def _load_stays(path: Path) -> list[Stay]:
    with path.open(newline="") as rows:
        return [
            Stay(
                checkin_id=int(checkin_id),
                person_id=int(visitor_id),
                venue_id=int(venue_id),
                hall_id=None,
                starts_at=datetime.fromisoformat(checked_in_at),
                ends_at=datetime.fromisoformat(checked_out_at),
            )
            for checkin_id, visitor_id, venue_id, checked_in_at, checked_out_at in csv.reader(rows)
        ]


@pytest.mark.parametrize(
    ("generator_args", "pairs", "people"),
    [
        pytest.param((), 41, 41, id="100k"),
        pytest.param(
            ("--checkins", "1000000", "--visitors", "100000"),
            512,
            509,
            id="1M",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="set RUN_SLOW=1"),
            ],
        ),
    ],
)
def test_plain_overlap_reproduces_the_reference_counts(
    tmp_path: Path, generator_args: tuple[str, ...], pairs: int, people: int
) -> None:
    _run("gen_workload.py", str(tmp_path), "--now", NOW, *generator_args)
    reference = re.search(
        r"overlapping_pairs=(\d+) distinct_contacts=(\d+)", _run("reference_overlap.py", str(tmp_path))
    )
    assert reference is not None
    stays = _load_stays(tmp_path / "checkins.csv")
    case_stays = [s for s in stays if s.person_id == CASE_PERSON]

    # The reference rule is plain overlap: no tail, and the risk split does not change the count.
    contacts = find_contacts(case_stays, iter(stays), MatchRules(tail=timedelta(0)))

    counts = (len(contacts), len({c.person_id for c in contacts}))
    assert counts == (int(reference[1]), int(reference[2]))
    assert counts == (pairs, people)
