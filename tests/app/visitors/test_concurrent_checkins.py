"""Many check-ins of the same people at once, over real HTTP: one open visit each, no visit counted twice.

Two phones of one person (or a double tap) race at different venues. The live server handles the
requests in threads with their own database connections, so the races are real: on PostgreSQL the
open visit's row lock and the one-open-visit index decide them, on SQLite the write lock.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.models import Checkin, Person, utcnow
from app.services import people, posters, sign_in
from tests import factories
from tests.support.concurrency import errors, run_together
from tests.support.live import LiveServer

THREADS, REQUESTS_EACH = 6, 12


def test_simultaneous_check_ins_keep_one_open_visit_per_person(live: LiveServer) -> None:
    now = utcnow()
    with live.app.app_context():
        venues = [factories.venue(name=f"Concurrency {i}") for i in range(3)]
        poster_tokens = [posters.issue_poster(v.entrances[0], now - timedelta(minutes=1))[1] for v in venues]
        people = [factories.person(), factories.person()]
        # Two phones per person.
        devices = [(p.id, sign_in.remember_device(p, now)) for p in people for _ in range(2)]
        person_ids = [p.id for p in people]
        db.session.commit()

    def phone(seed: int) -> list[tuple[int, int, dict[str, Any]]]:
        pick, answers = random.Random(seed), []
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for _ in range(REQUESTS_EACH):
                person_id, token = pick.choice(devices)
                response = client.post(
                    "/api/v1/checkins",
                    json={"poster_token": pick.choice(poster_tokens)},
                    headers={"Authorization": f"Bearer {token}"},
                )
                answers.append((person_id, response.status_code, response.json()))
        return answers

    outcomes = run_together([functools.partial(phone, seed) for seed in range(THREADS)])
    assert errors(outcomes) == []
    answers = [answer for answers in outcomes for answer in answers]
    assert len(answers) == THREADS * REQUESTS_EACH
    statuses = Counter(status for _, status, _ in answers)
    # 503 is the documented "busy, try again" answer; anything else is a fault.
    assert set(statuses) <= {200, 201, 503}, statuses
    assert statuses[201] > 0, statuses

    with live.app.app_context():
        for person_id in person_ids:
            rows = db.session.scalars(
                select(Checkin).where(Checkin.person_id == person_id).order_by(Checkin.checked_in_at, Checkin.id)
            ).all()
            created = [body["checkin"]["id"] for pid, status, body in answers if pid == person_id and status == 201]
            ended = [
                body["ended"]["id"]
                for pid, status, body in answers
                if pid == person_id and status in (200, 201) and body["ended"]
            ]
            # Every visit was reported created exactly once, and no visit was ended twice.
            assert sorted(created) == sorted(v.id for v in rows)
            assert len(ended) == len(set(ended))
            assert sum(v.checked_out_at is None for v in rows) <= 1
            for visit in rows:
                assert visit.checked_out_at is None or visit.checked_out_at >= visit.checked_in_at
            # Visits never overlap. Two requests whose clocks crossed can leave a visit that ended at
            # the moment it began (rules.check_in_time); such a visit has no extent to overlap with.
            lasting = [v for v in rows if v.checked_out_at is None or v.checked_out_at > v.checked_in_at]
            for earlier, later in itertools.pairwise(lasting):
                assert earlier.checked_out_at is not None and earlier.checked_out_at <= later.checked_in_at
        db.session.remove()


def test_simultaneous_check_ins_naming_the_same_new_companion_create_that_person_once(live: LiveServer) -> None:
    now = utcnow()
    companion = "+79165550199"
    with live.app.app_context():
        venue = factories.venue(name="Concurrency party")
        poster = posters.issue_poster(venue.entrances[0], now - timedelta(minutes=1))[1]
        tokens = [sign_in.remember_device(factories.person(), now) for _ in range(THREADS)]
        venue_id = venue.id
        db.session.commit()

    def phone(token: str) -> httpx.Response:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            return client.post(
                "/api/v1/checkins",
                json={"poster_token": poster, "party_size": 2, "companion_phones": [companion]},
                headers={"Authorization": f"Bearer {token}"},
            )

    answers = run_together([functools.partial(phone, token) for token in tokens])
    assert errors(answers) == []
    assert sorted(a.status_code for a in answers) == [201] * THREADS, [a.text for a in answers]
    with live.app.app_context():
        found = db.session.scalars(select(Person).where(Person.phone_hash == people.phone_lookup(companion))).all()
        assert len(found) == 1
        visits = db.session.scalars(select(Checkin).where(Checkin.venue_id == venue_id)).all()
        assert len(visits) == THREADS
        assert all([c.person_id for c in v.companions] == [found[0].id] for v in visits)
        db.session.remove()


def test_a_check_in_waits_for_the_persons_row_before_it_locks_their_visit(live: LiveServer) -> None:
    # The order every path keeps: the person's row, then their visits. Another transaction (a kiosk
    # batch, say) holds the person's row and then asks for the open visit: the check-in must be waiting
    # for the row with nothing else held, or the two wait for each other until PostgreSQL ends one.
    if not live.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("SQLite has no row locks: one writer at a time")
    now = utcnow()
    with live.app.app_context():
        cafe, theatre = factories.venue(name="Lock order 1"), factories.venue(name="Lock order 2")
        person = factories.person()
        person.last_seen_at = now - timedelta(hours=2)  # so that the check-in writes the person's row too
        factories.checkin(person, cafe, now - timedelta(minutes=10), minutes=None)
        token = sign_in.remember_device(person, now)
        poster = posters.issue_poster(theatre.entrances[0], now - timedelta(minutes=1))[1]
        person_id = person.id
        db.session.commit()
        db.session.remove()
        holder = db.engine.connect()
    try:
        holder.execute(text("SET lock_timeout = '10s'"))
        holder.execute(text("SELECT id FROM people WHERE id = :p FOR NO KEY UPDATE"), {"p": person_id})

        def check_in() -> httpx.Response:
            with httpx.Client(base_url=live.url, timeout=30) as client:
                return client.post(
                    "/api/v1/checkins", json={"poster_token": poster}, headers={"Authorization": f"Bearer {token}"}
                )

        def then_the_visit() -> float:
            time.sleep(0.5)  # the check-in is now waiting for the person's row
            started = time.monotonic()
            holder.execute(
                text("SELECT id FROM checkins WHERE person_id = :p AND checked_out_at IS NULL FOR UPDATE"),
                {"p": person_id},
            )
            waited = time.monotonic() - started
            holder.commit()
            return waited

        answer, waited = run_together([check_in, then_the_visit])
    finally:
        holder.close()
    assert not isinstance(waited, BaseException), waited
    assert waited < 0.5, f"the open visit was locked by the waiting check-in ({waited:.2f} s)"
    assert isinstance(answer, httpx.Response) and answer.status_code == 201, answer
