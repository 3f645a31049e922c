"""The matching job on connections of its own, as the jobs process runs it (not in a test's rolled-back
transaction). On PostgreSQL one batch is stored and committed in a second thread while the next one is
read and sent; on SQLite the batches run one after another. Either way every case is matched once, and a
batch that fails at its commit is rolled back and its cases matched one by one."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Case, Exposure, utcnow
from app.services import exposure_jobs
from app.services.exposures import StartedBatch, rules_from_config
from tests import factories as f
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()
MSK = ZoneInfo("Europe/Moscow")


def _scene(cases: int, now: datetime) -> list[int]:
    """`cases` sick people, each at a venue of their own yesterday with two other visitors; committed."""
    ids = []
    for n in range(cases):
        venue = f.venue(name=f"venue {n}")
        start = now - timedelta(days=1, hours=n)
        sick = f.person()
        f.checkin(sick, venue, start)
        for _ in range(2):
            f.checkin(f.person(), venue, start + timedelta(minutes=10))
        ids.append(f.case(sick, now, now).id)
    db.session.commit()
    return ids


def _exposed_per_case(case_ids: list[int]) -> dict[int, int]:
    rows = db.session.execute(
        select(Exposure.case_id, func.count()).where(Exposure.case_id.in_(case_ids)).group_by(Exposure.case_id)
    )
    return dict(rows.tuples().all())


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """(thread, case ids) of every batch completed, in order; batches of 2 cases."""
    monkeypatch.setattr(exposure_jobs, "MATCH_BATCH", 2)
    completed: list[tuple[str, list[int]]] = []
    real = StartedBatch.complete

    def complete(self: StartedBatch) -> Any:
        completed.append((threading.current_thread().name, [r.case_id for r in self.results]))
        return real(self)

    monkeypatch.setattr(StartedBatch, "complete", complete)
    return completed


def test_every_case_is_matched_once_and_postgresql_commits_batches_beside_the_next(
    live: LiveServer, spied: list[tuple[str, list[int]]]
) -> None:
    with live.app.app_context():
        now = utcnow()
        case_ids = _scene(5, now)
        result = exposure_jobs.match_pending_cases(rules_from_config(live.app.config), MSK)
        assert (result["cases"], result["exposures"], result["failed"]) == (5, 10, 0)
        db.session.expire_all()
        assert _exposed_per_case(case_ids) == dict.fromkeys(case_ids, 2)
        matched = db.session.execute(select(Case.matched_at, Case.outbreaks_pending).where(Case.id.in_(case_ids)))
        assert {(at is not None, pending) for at, pending in matched} == {(True, False)}
        assert sorted(i for _thread, ids in spied for i in ids) == case_ids
        threads = {thread.split("_")[0] for thread, _ids in spied}
        if db.engine.dialect.name == "postgresql":
            assert threads == {"match-commit"}, spied
        else:
            assert threads == {threading.main_thread().name}, spied
        # A second run finds nothing to do.
        again = exposure_jobs.match_pending_cases(rules_from_config(live.app.config), MSK)
        assert (again["cases"], again["exposures"]) == (0, 0)


def test_a_batch_that_fails_at_its_commit_is_rolled_back_and_its_cases_matched_one_by_one(
    live: LiveServer, spied: list[tuple[str, list[int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with live.app.app_context():
        now = utcnow()
        case_ids = _scene(4, now)
        spying = StartedBatch.complete

        def power_cut_once(self: StartedBatch) -> Any:
            result = spying(self)  # stored and flushed, not committed
            if len(self.results) == 2 and case_ids[0] in [r.case_id for r in self.results]:
                raise RuntimeError("power cut before the commit")
            return result

        monkeypatch.setattr(StartedBatch, "complete", power_cut_once)
        result = exposure_jobs.match_pending_cases(rules_from_config(live.app.config), MSK)
        assert (result["cases"], result["exposures"], result["failed"]) == (4, 8, 0)
        db.session.expire_all()
        assert _exposed_per_case(case_ids) == dict.fromkeys(case_ids, 2)
        # The failed batch, then the other, then its two cases alone.
        assert [ids for _thread, ids in spied] == [case_ids[:2], case_ids[2:], [case_ids[0]], [case_ids[1]]]
