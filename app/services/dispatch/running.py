"""The dispatcher's loop: one batch, the pipelined job that runs batches, and its schedule."""

from __future__ import annotations

import random
import time as time_module
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from flask import Flask

from app.jobs import Job
from app.models import utcnow
from app.services.channels import AttemptResult, Outgoing
from app.services.dispatch.claiming import _claim_phase
from app.services.dispatch.recording import _record_phase
from app.services.dispatch.sending import Channels, build_channels
from app.services.dispatch.settings import DispatchSettings, DispatchSummary

JOB_TIME_BUDGET_SECONDS = 50.0


def dispatch_once(
    now: datetime,
    settings: DispatchSettings,
    channels: Channels,
    *,
    rng: random.Random | None = None,
) -> DispatchSummary:
    """One batch: claim and commit, submit with no transaction open, record and commit."""
    claimed_until = time_module.monotonic() + settings.claim_seconds
    outgoing, summary = _claim_phase(now, settings)
    if outgoing:
        results = channels.submit(outgoing, claimed_until)
        summary.add(_record_phase(outgoing, results, now, settings, rng or random.Random()))
    return summary


def run_dispatcher(
    app: Flask,
    *,
    clock: Callable[[], datetime] = utcnow,
    time_budget: float = JOB_TIME_BUDGET_SECONDS,
    channels: Channels | None = None,
) -> dict[str, Any]:
    """The job: batches until the due queue is empty or the time budget is spent.

    Pipelined: while one batch is being submitted (in a worker thread, the only one talking to
    the gateway), this thread records the batch before it and claims the next one, so the
    database work hides behind the network wait. Each batch keeps its own two transactions.
    """
    settings = DispatchSettings.from_config(app.config)
    own_channels = channels is None
    channels = channels or build_channels(app.config)
    rng = random.Random()
    total = DispatchSummary()
    deadline = time_module.monotonic() + time_budget
    in_flight: tuple[list[Outgoing], Future[list[AttemptResult]], datetime] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-submit") as submitter:
            while True:
                now = clock()
                claimed_until = time_module.monotonic() + settings.claim_seconds
                outgoing, claimed = _claim_phase(now, settings)
                total.add(claimed)
                submitted = submitter.submit(channels.submit, outgoing, claimed_until) if outgoing else None
                if in_flight is not None:
                    previous, future, claimed_at = in_flight
                    total.add(_record_phase(previous, future.result(), claimed_at, settings, rng))
                in_flight = (outgoing, submitted, now) if submitted is not None else None
                is_full = claimed.claimed + claimed.deferred >= settings.batch_size
                if not is_full or time_module.monotonic() > deadline:
                    break
            if in_flight is not None:
                previous, future, claimed_at = in_flight
                total.add(_record_phase(previous, future.result(), claimed_at, settings, rng))
    finally:
        if own_channels:
            channels.close()
    return {name: getattr(total, name) for name in total.__dataclass_fields__}


def _dispatch_job(app: Flask) -> dict[str, Any]:
    return run_dispatcher(app)


JOBS: list[Job] = [Job("dispatch_outbox", _dispatch_job, "interval", {"seconds": 5})]
