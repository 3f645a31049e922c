"""Matching benchmark: one case's database matching (warm, median) and many cases, on the shared workload.

Usage: .venv/bin/python bench/bench_matching.py [--database-url URL] [--checkins N] [--visitors N]
       [--venues N] [--runs 15] [--cases 200] [--batch-cases 10000] [--batch-size 100] [--job-cases 1000]
       [--workdir DIR] [--reuse]
Loads ../shared/bench workload (gen_workload.py --now 2026-11-20T12:00:00) into an empty database
migrated to head (default: a SQLite file in the workdir; check-ins through COPY or the driver's
executemany, with their secondary indexes built after the load), checks the reference counts for visitor 1
with the tail off, then times exposures.find_case_contacts (one case: its visits, then one index
range scan per case visit, rows streamed into matching.find_contacts), random cases one at a time,
the same in batches as the job runs them (find_contacts_for_cases), and the job itself with its writes
(exposure_jobs.match_pending_cases, after recording the cases untimed); reports peak Python memory
(tracemalloc) and, for the job, the CPU per stored exposure of this process and of PostgreSQL's
processes (bench/cpu_split.py: on a quiet machine).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import delete as db_delete
from sqlalchemy import func as db_func
from sqlalchemy import select as db_select
from sqlalchemy import table as db_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.cpu_split import cpu_seconds  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="")
    parser.add_argument("--checkins", type=int, default=1_000_000)
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument("--venues", type=int, default=200, help="the workload's venues (its default: 200)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--cases", type=int, default=200, help="random cases matched one at a time")
    parser.add_argument("--batch-cases", type=int, default=10_000, help="random cases matched in batches")
    parser.add_argument("--batch-size", type=int, default=100, help="cases per batch (the job's MATCH_BATCH)")
    parser.add_argument("--job-cases", type=int, default=1_000, help="cases matched and written by the job")
    parser.add_argument("--workdir", default="/tmp/bench-matching")
    parser.add_argument("--reuse", action="store_true", help="keep a database loaded by an earlier run")
    args = parser.parse_args()
    work = Path(args.workdir)
    shape = f"{args.checkins}" if args.venues == 200 else f"{args.checkins}-{args.venues}v"
    data = work / f"data-{shape}"
    if not (data / "checkins.csv").exists():
        subprocess.run([sys.executable, str(BENCH / "gen_workload.py"), str(data), "--now", "2026-11-20T12:00:00",
                        "--checkins", str(args.checkins), "--visitors", str(args.visitors),
                        "--venues", str(args.venues)], check=True)  # fmt: skip
    reference = subprocess.run([sys.executable, str(BENCH / "reference_overlap.py"), str(data)], check=True,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    url = args.database_url or f"sqlite:///{work / f'bench-{shape}.sqlite3'}"

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import exposure_jobs, matching
    from app.services.exposure_jobs import match_pending_cases
    from app.services.exposures import (
        MAX_STAY,
        CaseQuery,
        _Halls,
        candidate_stays,
        case_stays,
        find_case_contacts,
        find_contacts_for_cases,
    )
    from app.services.matching import MatchRules
    from tests.app.services.test_exposures_workload import load_workload
    from tests.conftest import FROZEN_NOW, reset_database

    key = base64.urlsafe_b64encode(b"b" * 32).decode()
    app = create_app({"APP_ENV": "testing", "DATABASE_URL": url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
                      "DATA_ENCRYPTION_KEYS": f"b1:{key}", "LOOKUP_HASH_KEY": key})  # fmt: skip
    rules = MatchRules(tail=timedelta(0), lead_days=15)
    with app.app_context():
        started = time.perf_counter()
        loaded = args.reuse and _loaded_checkins(db.session) == args.checkins
        if loaded:
            db.session.commit()
            upgrade()  # an earlier load may predate the latest migrations
            person_of = _person_ids(db.session, data)
        else:
            reset_database(url)
            upgrade()
            person_of = load_workload(
                db.session,
                data,
                rebuild_indexes=True,
                progress=lambda n: print(f"\r  loaded {n:,} of {args.checkins:,} check-ins", end="", flush=True),
            )
            print()
        db.session.commit()
        if url.startswith("postgresql"):
            # VACUUM as well: a table just loaded has no visibility map yet, so each index-only scan
            # of the matcher would visit the table too, until autovacuum (minutes later, mid-run) sets it.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(db.text("VACUUM (ANALYZE)"))
        else:
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
        load_seconds = time.perf_counter() - started
        say(f"database: {url.split(':')[0]}  checkins={args.checkins} visitors={args.visitors} venues={args.venues}  "
            f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}")  # fmt: skip
        reused = " (reused an earlier load)" if loaded else ""
        say(f"load (bulk insert, ANALYZE; VACUUM too on PostgreSQL): {load_seconds:.1f} s{reused}")
        say(f"reference: {reference}")
        tz = ZoneInfo("Europe/Moscow")
        window = matching.infectious_window(date(2026, 11, 20), None, None, tz, rules)
        stays = case_stays(person_of[1], window, FROZEN_NOW)
        pairs = matching.find_contacts(stays, candidate_stays(stays, rules, FROZEN_NOW, _Halls()), rules)
        _, contacts = find_case_contacts(person_of[1], window, rules, FROZEN_NOW)
        say(f"database matcher (tail off, 15-day window): pairs={len(pairs)} distinct_people="
            f"{len({c.person_id for c in contacts})}")  # fmt: skip
        timings = []
        for _ in range(args.runs):
            db.session.rollback()
            t0 = time.perf_counter()
            find_case_contacts(person_of[1], window, rules, FROZEN_NOW)
            timings.append((time.perf_counter() - t0) * 1000)
        say(f"one case (visitor 1, {len(stays)} visits), warm, {args.runs} runs: median "
            f"{statistics.median(timings):.2f} ms, min {min(timings):.2f} ms, max {max(timings):.2f} ms")  # fmt: skip
        # Many cases: random visitors as cases, default rules (30 min tail, 2 lead days).
        default_rules = MatchRules()
        rng = random.Random(7)
        sample = rng.sample(sorted(person_of.values()), min(args.cases, len(person_of)))
        window2 = matching.infectious_window(date(2026, 11, 18), None, None, tz, default_rules)
        t0 = time.perf_counter()
        found = 0
        for person_id in sample:
            found += len(find_case_contacts(person_id, window2, default_rules, FROZEN_NOW)[1])
            db.session.rollback()
        many_seconds = time.perf_counter() - t0
        per_case_ms = many_seconds / len(sample) * 1000
        say(f"{len(sample)} random cases one at a time (default rules, window 16-19 Nov): {many_seconds:.2f} s"
            f" = {per_case_ms:.2f} ms/case, {found} contacts")  # fmt: skip
        # The same kind of cases in batches, as the job matches a lab import: contacts found, not stored.
        people = sorted(person_of.values())
        batch_sample = [rng.choice(people) for _ in range(args.batch_cases)]

        def run_batches(cases: list[int]) -> int:
            total = 0
            for first in range(0, len(cases), args.batch_size):
                chunk = cases[first : first + args.batch_size]
                queries = [CaseQuery(first + n, person_id, window2) for n, person_id in enumerate(chunk)]
                total += sum(len(c) for _s, c in find_contacts_for_cases(queries, default_rules, FROZEN_NOW).values())
                db.session.rollback()
            return total

        t0 = time.perf_counter()
        batch_found = run_batches(batch_sample)
        batch_seconds = time.perf_counter() - t0
        batch_ms = batch_seconds / len(batch_sample) * 1000
        say(f"{len(batch_sample)} random cases in batches of {args.batch_size} (matched: every contact found, "
            f"not stored): {batch_seconds:.2f} s = {batch_ms:.2f} ms/case, {batch_found} contacts")  # fmt: skip
        say(f"  batched vs one at a time: {per_case_ms / batch_ms:.1f}x faster per case")
        # Memory in a separate pass: tracemalloc slows Python down several times.
        tracemalloc.start()
        run_batches(batch_sample[: 10 * args.batch_size])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        say(f"  peak traced Python memory over {min(len(batch_sample), 10 * args.batch_size)} of these cases: "
            f"{peak / 1e6:.1f} MB (one batch's visits at a time; the table is never loaded)")  # fmt: skip
        # The whole job step for a lab import, as the jobs process runs it: cases stored, matched in
        # batches, exposures with their reasons written, one commit per batch; removed afterwards.
        from app.models import Case, Exposure, VenueOutbreak

        # The cases are recorded first (a lab import), and only matching them is timed.
        job_sample = batch_sample[: args.job_cases]
        t0 = time.perf_counter()
        new_cases = [Case(person_id=p, tested_on=date(2026, 11, 18), created_at=FROZEN_NOW) for p in job_sample]
        db.session.add_all(new_cases)
        db.session.commit()
        case_ids: list[int] = [c.id for c in new_cases]
        db.session.expunge_all()
        say(f"{len(case_ids)} cases recorded (not timed below): {time.perf_counter() - t0:.2f} s")
        cpu0, python0 = cpu_seconds(), time.process_time()
        t0 = time.perf_counter()
        exposure_jobs.MATCH_BATCH = args.batch_size
        summary = match_pending_cases(default_rules, tz, clock=lambda: FROZEN_NOW)
        stored = summary["exposures"]
        say(f"  the job: {summary}")
        job_seconds = time.perf_counter() - t0
        python_cpu, cpu1 = time.process_time() - python0, cpu_seconds()
        job_ms = job_seconds / len(job_sample) * 1000
        say(f"{len(job_sample)} cases through the job's steps (stored, matched, {stored} exposures written with "
            f"reasons, committed per batch): {job_seconds:.2f} s = {job_ms:.2f} ms/case")  # fmt: skip
        per_row = 1e6 / max(stored, 1)
        server = (
            f", PostgreSQL {(cpu1['postgres'] - cpu0['postgres']) * per_row:.0f} us"
            if url.startswith("postgresql")
            else ""
        )
        say(f"  CPU per stored exposure, finding included: this process {python_cpu * per_row:.0f} us{server}")
        if url.startswith("postgresql"):
            row_bytes = db.session.execute(
                db.text("SELECT avg(pg_column_size(e.*)) FROM exposures e WHERE e.case_id = ANY(:ids)"),
                {"ids": case_ids},
            ).scalar()
            say(f"  average exposure row as stored (heap, without indexes): {float(row_bytes or 0):.0f} bytes")
        for first in range(0, len(case_ids), 500):
            chunk = case_ids[first : first + 500]
            db.session.execute(db_delete(Exposure).where(Exposure.case_id.in_(chunk)))
            db.session.execute(db_delete(Case).where(Case.id.in_(chunk)))
        db.session.execute(db_delete(VenueOutbreak))  # a benchmark database: only this run's outbreaks
        db.session.commit()
    say(f"max stay bound for range scans: {MAX_STAY}")


def say(line: str) -> None:
    print(line, flush=True)


def _loaded_checkins(session: object) -> int | None:
    """How many check-ins an earlier run loaded (None when the database has no schema yet)."""
    from sqlalchemy import inspect

    bind = session.get_bind()  # type: ignore[attr-defined]
    if "checkins" not in inspect(bind).get_table_names():
        return None
    return session.execute(db_select(db_func.count()).select_from(db_table("checkins"))).scalar()  # type: ignore[attr-defined]


def _person_ids(session: object, directory: Path) -> dict[int, int]:
    """Workload visitor id -> person id of an already loaded database (people were inserted in order)."""
    from app.models import Person

    ids = session.execute(db_select(Person.id).order_by(Person.id)).scalars().all()  # type: ignore[attr-defined]
    return {index + 1: person_id for index, person_id in enumerate(ids)}


if __name__ == "__main__":
    main()
