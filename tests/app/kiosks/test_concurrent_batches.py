"""Kiosks in two buildings send their batches at the same moment, over real HTTP, about the same people.

Each kiosk saw every visitor once in the last ten minutes, and each sends its observations in its own
order, in batches, all four at once. The live server handles them in threads with their own database
connections, so batches for the same people really race: the row locks (PostgreSQL) or the write lock
(SQLite), the retry on a lost race and the planner for late items must still leave each person in one
place at a time, with every observation answered once.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from app.extensions import db
from app.models import Checkin
from tests import factories
from tests.app.kiosks.conftest import enrol_kiosk, scanner_item
from tests.support.concurrency import errors, run_together
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()

PEOPLE, BATCH, RETRIES = 20, 10, 20


def test_kiosks_in_two_buildings_sending_at_once_keep_each_person_in_one_place(live: LiveServer) -> None:
    now = datetime.now(UTC)
    pick = random.Random(7)
    with live.app.app_context():
        buildings = [factories.venue(name=f"Министерство, корпус {i}") for i in (1, 2)]
        kiosks = [enrol_kiosk(venue, now - timedelta(hours=1)) for venue in buildings for _ in range(2)]
        people = [factories.person() for _ in range(PEOPLE)]
        person_ids = [p.id for p in people]
        sent: dict[int, list[dict[str, Any]]] = {}
        for kiosk in kiosks:
            items = [scanner_item(p, now - timedelta(seconds=pick.uniform(0, 600))) for p in people]
            pick.shuffle(items)
            sent[kiosk.id] = items
        db.session.commit()
        db.session.remove()

    def kiosk_sends(credential: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = []
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for i in range(0, len(items), BATCH):
                body = {"items": items[i : i + BATCH]}
                for _attempt in range(RETRIES):
                    response = client.post(
                        "/api/v1/kiosk/checkins", json=body, headers={"Authorization": f"Bearer {credential}"}
                    )
                    if response.status_code != 503:  # busy: the kiosk program sends the batch again
                        break
                    time.sleep(0.05)
                assert response.status_code == 200, response.text
                answers.extend(response.json()["results"])
        return answers

    outcomes = run_together([functools.partial(kiosk_sends, k.credential, sent[k.id]) for k in kiosks])
    assert errors(outcomes) == []
    answers = [answer for answers in outcomes for answer in answers]
    all_items = [item for items in sent.values() for item in items]
    assert len(answers) == len(all_items)
    assert {a["client_id"] for a in answers} == {i["client_id"] for i in all_items}
    assert Counter(a["status"] for a in answers) == {"accepted": len(all_items)}, answers

    with live.app.app_context():
        rows = db.session.scalars(
            select(Checkin).where(Checkin.person_id.in_(person_ids)).order_by(Checkin.checked_in_at, Checkin.id)
        ).all()
        db.session.remove()
    # Each accepted observation either opened a visit (its client id is stored on it) or continued one.
    created = [a["client_id"] for a in answers if a["reason"] == "Checked in."]
    assert sorted(created) == sorted(v.client_id for v in rows)
    for person_id in person_ids:
        visits = [v for v in rows if v.person_id == person_id]
        assert sum(v.checked_out_at is None for v in visits) <= 1
        for visit in visits:
            assert visit.checked_out_at is None or visit.checked_out_at >= visit.checked_in_at
        lasting = [v for v in visits if v.checked_out_at is None or v.checked_out_at > v.checked_in_at]
        for earlier, later in itertools.pairwise(lasting):
            assert earlier.checked_out_at is not None and earlier.checked_out_at <= later.checked_in_at, [
                (v.venue_id, v.checked_in_at, v.checked_out_at, v.checkout_reason) for v in visits
            ]
