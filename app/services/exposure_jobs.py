"""Jobs of the health-official domain: matching new cases, policy approval."""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

from app.jobs import Job, unit_of_work
from app.models import utcnow

log = logging.getLogger(__name__)
MATCH_BATCH = 100


def match_cases(app: Flask) -> dict[str, Any]:
    """Match every case not matched yet, MATCH_BATCH cases per transaction: the batch's visits are
    read together, so a lab import of thousands of cases costs far less than one query set per case.
    First, cases that visits recorded since their matching may concern are marked to be matched again
    (app/services/exposures/rematching.py).

    A batch that fails (say, one case with corrupt data) is rolled back whole and its cases are
    matched again one transaction each, so the bad case is logged and skipped for this run and
    cannot block the cases behind it; it stays unmatched and is retried on the next run.

    Venue outbreaks are counted once, after the batches, at the venues of every case matched and not
    counted yet (this run's, and those of a run that stopped half-way).
    """
    from app.services.exposures import (
        match_case,
        match_case_batch,
        pending_case_ids,
        record_pending_outbreaks,
        rules_from_config,
    )
    from app.services.exposures.rematching import cases_to_match_again, mark_for_matching_again

    rules = rules_from_config(app.config)
    tz = ZoneInfo(app.config["DEFAULT_TIMEZONE"])
    with unit_of_work():
        again = cases_to_match_again(utcnow(), rules)
        mark_for_matching_again(again)
    failed: list[int] = []
    matched = exposures = 0
    while True:
        with unit_of_work():
            ids = pending_case_ids(MATCH_BATCH, exclude=failed)
        if not ids:
            break
        try:
            with unit_of_work():
                batch = match_case_batch(ids, now=utcnow(), rules=rules, tz=tz, outbreaks=False)
        except Exception:
            log.warning("matching a batch failed; matching its cases one by one", extra={"cases": len(ids)})
        else:
            matched += len(batch.cases)
            exposures += sum(result.exposures_inserted for result in batch.cases)
            continue
        for case_id in ids:
            try:
                with unit_of_work():
                    result = match_case(case_id, now=utcnow(), rules=rules, tz=tz, outbreaks=False)
            except Exception:
                log.exception("matching a case failed; it will be retried", extra={"case_id": case_id})
                failed.append(case_id)
                continue
            matched += 1
            exposures += result.exposures_inserted
    with unit_of_work():
        outbreaks = record_pending_outbreaks(rules, utcnow())
    return {
        "cases": matched,
        "exposures": exposures,
        "failed": len(failed),
        "matched_again": len(again),
        "outbreaks": outbreaks,
    }


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
