"""Jobs of the health-official domain: matching new cases, policy approval."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from sqlalchemy import Engine

from app.extensions import db
from app.jobs import Job, unit_of_work
from app.models import utcnow

if TYPE_CHECKING:
    from app.services.exposures import BatchMatch, StartedBatch
    from app.services.matching import MatchRules

log = logging.getLogger(__name__)
MATCH_BATCH = 100


def match_cases(app: Flask) -> dict[str, Any]:
    """The job: match every case not matched yet (match_pending_cases), with the deployment's rules."""
    from app.services.exposures import rules_from_config

    return match_pending_cases(rules_from_config(app.config), ZoneInfo(app.config["DEFAULT_TIMEZONE"]))


def match_pending_cases(rules: MatchRules, tz: ZoneInfo, clock: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Match every case not matched yet, MATCH_BATCH cases per transaction: the batch's visits are
    read together, so a lab import of thousands of cases costs far less than one query set per case.
    First, cases that visits recorded since their matching may concern are marked to be matched again
    (app/services/exposures/rematching.py).

    On PostgreSQL two batches overlap: while the database is still storing one batch's exposures and
    committing it (in a second thread, on that batch's own session and connection), this thread reads
    and sends the next one. Each batch is still one transaction, holding its cases locked from the
    start, and at most two are open.

    A batch that fails (say, one case with corrupt data) is rolled back whole and its cases are
    matched again one transaction each, after the other batches, so the bad case is logged and skipped
    for this run and cannot block the cases behind it; it stays unmatched and is retried on the next run.

    Venue outbreaks are counted once, after the batches, at the venues of every case matched and not
    counted yet (this run's, and those of a run that stopped half-way).
    """
    from app.services.exposures import match_case, pending_case_ids, record_pending_outbreaks
    from app.services.exposures.rematching import cases_to_match_again, mark_for_matching_again

    clock = clock or utcnow  # the current time by default (looked up now: tests move this module's clock)
    with unit_of_work():
        again = cases_to_match_again(clock(), rules, int(current_app.config["RETENTION_DAYS"]))
        mark_for_matching_again(again)
    # Only with connections of their own: a session bound to one connection (a test's rolled-back
    # transaction) cannot hand a batch to another thread.
    bind = db.session.get_bind()
    overlap = bind.dialect.name == "postgresql" and isinstance(bind, Engine)
    failed: list[int] = []
    retry: list[int] = []  # cases of failed batches, matched one by one after the others
    matched = exposures = 0
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="match-commit") as committer:
        storing: tuple[Future[BatchMatch], list[int]] | None = None

        def collect() -> None:
            nonlocal storing, matched, exposures
            if storing is None:
                return
            future, ids = storing
            storing = None
            try:
                batch = future.result()
            except Exception:
                log.warning("matching a batch failed; matching its cases one by one", extra={"cases": len(ids)})
                retry.extend(ids)
                return
            matched += len(batch.cases)
            exposures += sum(result.exposures_inserted for result in batch.cases)

        while True:
            in_flight = storing[1] if storing is not None else []
            with unit_of_work():
                ids = pending_case_ids(MATCH_BATCH, exclude=[*failed, *retry, *in_flight])
            if not ids:
                break
            started = _begin(ids, clock(), rules, tz)
            if started is None:
                retry.extend(ids)
                continue
            collect()  # at most one batch waits for its commit
            if overlap:
                storing = (committer.submit(_complete_elsewhere, app, started), ids)
                # This thread goes on with a session of its own; the batch's is the committer's now.
                db.session.registry.set(db.session.session_factory())
            else:
                storing = (_completed_here(started), ids)
        collect()
    for case_id in retry:
        try:
            with unit_of_work():
                result = match_case(case_id, now=clock(), rules=rules, tz=tz, outbreaks=False)
        except Exception:
            log.exception("matching a case failed; it will be retried", extra={"case_id": case_id})
            failed.append(case_id)
            continue
        matched += 1
        exposures += result.exposures_inserted
    with unit_of_work():
        outbreaks = record_pending_outbreaks(rules, clock())
    return {
        "cases": matched,
        "exposures": exposures,
        "failed": len(failed),
        "matched_again": len(again),
        "outbreaks": outbreaks,
    }


def _begin(ids: list[int], now: datetime, rules: MatchRules, tz: ZoneInfo) -> StartedBatch | None:
    """Begin a batch in db.session's transaction; None (rolled back) if it failed."""
    from app.services.exposures import begin_case_batch

    try:
        return begin_case_batch(ids, now=now, rules=rules, tz=tz, outbreaks=False)
    except Exception:
        db.session.rollback()
        log.warning("matching a batch failed; matching its cases one by one", extra={"cases": len(ids)})
        return None


def _complete_and_commit(started: StartedBatch) -> BatchMatch:
    """Finish a begun batch and commit it, on its own session."""
    try:
        result = started.complete()
        started.session.commit()
        return result
    except BaseException:
        started.session.rollback()
        raise


def _complete_elsewhere(app: Flask, started: StartedBatch) -> BatchMatch:
    """_complete_and_commit in the committer thread, which then closes the batch's session."""
    with app.app_context():  # the session finds its engine through the app
        try:
            return _complete_and_commit(started)
        finally:
            started.session.close()


def _completed_here(started: StartedBatch) -> Future[BatchMatch]:
    """_complete_and_commit in this thread, its outcome as a finished Future."""
    future: Future[BatchMatch] = Future()
    try:
        future.set_result(_complete_and_commit(started))
    except Exception as exc:
        future.set_exception(exc)
    return future


def auto_approve(app: Flask) -> dict[str, Any]:
    """Approve exposures left unreviewed for AUTO_APPROVE_AFTER_MINUTES (0 = never), and queue the
    notices of approved exposures that are waiting (for example after the stop switch was lifted)."""
    from app.services.notices import approve_due

    with unit_of_work():
        approved, queued = approve_due(
            now=utcnow(),
            after_minutes=int(app.config["AUTO_APPROVE_AFTER_MINUTES"]),
            public_base_url=app.config["PUBLIC_BASE_URL"],
        )
    return {"approved": approved, "queued": queued}


JOBS: list[Job] = [
    Job("match_cases", match_cases, "interval", {"minutes": 1}),
    Job("auto_approve", auto_approve, "interval", {"minutes": 1}),
]
