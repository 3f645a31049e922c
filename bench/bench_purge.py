"""Measure the retention purge of visits while many exposures and notices are stored.

    .venv/bin/python bench/bench_purge.py                       # SQLite in a temporary directory
    .venv/bin/python bench/bench_purge.py --database-url "$(.ci/start-postgres.sh 25450)"

Deleting a visit looks up the exposures and notices that refer to it (to delete them or set their
reference to NULL). The bench stores recent exposures and notices, which the purge keeps, and visits past
retention, which it deletes through the jobs process's own purge loop; it prints visits purged per second.
`--compare` then drops the indexes on the two references that migration m1_index_visit_references added,
stores the old visits again and purges them once more, to show what the indexes are for.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE_INDEXES = ("ix_exposures_case_checkin_id", "ix_notices_checkin_id")


def make_app(database_url: str) -> Any:
    from flask_migrate import upgrade

    from app import create_app
    from tests.conftest import reset_database, settings_for

    reset_database(database_url)
    app = create_app(settings_for(database_url, LOG_LEVEL="WARNING"))
    with app.app_context():
        upgrade()
    return app


def load_recent(exposures: int, now: datetime) -> tuple[int, int]:
    """A venue, `exposures` people with a recent visit each, one case, an exposure and a notice per person.
    Returns (venue id, entrance id)."""
    from sqlalchemy import insert, select

    from app.extensions import db
    from app.models import Case, Checkin, Exposure, Notice, Person
    from tests import factories

    venue = factories.venue(name="Bench hall", capacity=None)
    entrance_id = venue.entrances[0].id
    start = now - timedelta(days=2)
    db.session.execute(
        insert(Person),
        [{"phone_hash": os.urandom(32), "phone_enc": b"-", "created_at": now} for _ in range(exposures + 1)],
    )
    people = db.session.scalars(select(Person.id).order_by(Person.id)).all()
    case_person, contacts = people[0], people[1:]
    visit = {"venue_id": venue.id, "entrance_id": entrance_id, "party_size": 1, "source": "poster"}
    times = {"checked_in_at": start, "planned_checkout_at": start + timedelta(hours=1), "created_at": start}
    db.session.execute(
        insert(Checkin),
        [{**visit, **times, "person_id": p, "checked_out_at": start + timedelta(hours=1)} for p in people],
    )
    visits = dict(db.session.execute(select(Checkin.person_id, Checkin.id)).tuples().all())
    case = Case(person_id=case_person, tested_on=start.date(), created_at=now)
    db.session.add(case)
    db.session.flush()
    db.session.execute(
        insert(Exposure),
        [
            {
                "case_id": case.id,
                "case_checkin_id": visits[case_person],
                "checkin_id": visits[p],
                "person_id": p,
                "venue_id": venue.id,
                "risk": "low",
                "overlap_seconds": 3600,
                "reason_en": "bench",
                "reason_ru": "bench",
                "status": "new",
                "created_at": now,
            }
            for p in contacts
        ],
    )
    db.session.execute(
        insert(Notice),
        [
            {
                "person_id": p,
                "checkin_id": visits[p],
                "kind": "exposure",
                "risk": "low",
                "body_ru": "bench",
                "body_en": "bench",
                "created_at": now,
            }
            for p in contacts
        ],
    )
    db.session.commit()
    return venue.id, entrance_id


def load_old_visits(count: int, venue_id: int, entrance_id: int, now: datetime, retention_days: int) -> None:
    """`count` visits past retention, by people who also have a recent visit (so no person is purged)."""
    from sqlalchemy import insert, select

    from app.extensions import db
    from app.models import Checkin, Person

    people = db.session.scalars(select(Person.id).order_by(Person.id).limit(count)).all()
    start = now - timedelta(days=retention_days + 3)
    rows = []
    for n in range(count):
        at = start + timedelta(seconds=n)
        rows.append(
            {
                "person_id": people[n % len(people)],
                "venue_id": venue_id,
                "entrance_id": entrance_id,
                "party_size": 1,
                "source": "poster",
                "checked_in_at": at,
                "planned_checkout_at": at + timedelta(hours=1),
                "checked_out_at": at + timedelta(minutes=30),
                "created_at": at,
            }
        )
    db.session.execute(insert(Checkin), rows)
    db.session.commit()


def purge_visits(app: Any, now: datetime) -> tuple[int, float]:
    """The purge loop of the jobs process, for the visits only; (visits deleted, seconds)."""
    from app.jobs import unit_of_work
    from app.services.retention import TARGETS, purge_batch

    target = next(t for t in TARGETS if t.name == "checkins")
    batch = int(app.config["PURGE_BATCH_SIZE"])
    total = 0
    started = time.perf_counter()
    while True:
        with unit_of_work():
            count = purge_batch(target, now, app.config, batch)
        total += count
        if count < batch:
            return total, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary directory")
    parser.add_argument("--exposures", type=int, default=100_000, help="recent exposures (and notices) kept")
    parser.add_argument("--visits", type=int, default=5_000, help="visits past retention to purge")
    parser.add_argument("--compare", action="store_true", help="purge again without the reference indexes")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-purge-')}/purge.sqlite3"
    app = make_app(url)
    now = datetime.now(UTC)
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        retention = int(app.config["RETENTION_DAYS"])
        started = time.perf_counter()
        venue_id, entrance_id = load_recent(args.exposures, now)
        load_old_visits(args.visits, venue_id, entrance_id, now, retention)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM (ANALYZE)"))
        else:
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        print(
            f"loaded {args.exposures:,} exposures and notices, {args.visits:,} old visits in "
            f"{time.perf_counter() - started:.0f} s"
        )
        deleted, seconds = purge_visits(app, now)
        print(
            f"purge with the reference indexes: {deleted:,} visits in {seconds:.2f} s "
            f"=> {deleted / seconds:,.0f} visits/s (batches of {app.config['PURGE_BATCH_SIZE']})"
        )
        if args.compare:
            for name in REFERENCE_INDEXES:
                db.session.execute(text(f"DROP INDEX {name}"))
            db.session.commit()
            load_old_visits(args.visits, venue_id, entrance_id, now, retention)
            slow, slow_seconds = purge_visits(app, now)
            print(
                f"purge without them:               {slow:,} visits in {slow_seconds:.2f} s "
                f"=> {slow / slow_seconds:,.0f} visits/s, {(slow_seconds / slow) / (seconds / deleted):,.0f}x the time"
                " per visit"
            )
        dialect = db.engine.dialect.name
        db.engine.dispose()
    print(f"  database={dialect}; Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")


if __name__ == "__main__":
    main()
