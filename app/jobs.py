"""The scheduler's job list, the leader lock that keeps one jobs process active, and the job wrapper.

Run with `checkin jobs run` (never inside web workers: each worker would run every job). A second
process against the same database waits as a hot standby and takes over when the lock frees.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.extensions import db
from app.metrics import JOB_RUNS
from app.models import utcnow

log = logging.getLogger(__name__)

# An arbitrary constant: the advisory-lock id that names "the active jobs process" in PostgreSQL.
ADVISORY_LOCK_ID = 7_377_2020


@contextmanager
def unit_of_work() -> Iterator[None]:
    """One transaction: commit on success, roll back on any error. Jobs and CLI commands use this."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[Flask], dict[str, Any]]
    trigger: str = "interval"
    trigger_args: dict[str, Any] = field(default_factory=dict)


def _auto_checkout(app: Flask) -> dict[str, Any]:
    from app.services.visits import close_overdue_visits

    total = 0
    batch = int(app.config["AUTO_CHECKOUT_BATCH_SIZE"])
    while True:
        with unit_of_work():
            run = close_overdue_visits(utcnow(), batch)
        total += run.closed
        # A full batch read means more may be due, even if some of it changed meanwhile and was skipped.
        if run.found < batch:
            return {"closed": total}


def _purge(app: Flask) -> dict[str, Any]:
    from app.services.retention import TARGETS, purge_batch

    now = utcnow()
    batch = int(app.config["PURGE_BATCH_SIZE"])
    purged: dict[str, int] = {}
    for target in TARGETS:
        total = 0
        while True:
            with unit_of_work():
                count = purge_batch(target, now, app.config, batch)
            total += count
            if count < batch:
                break
        purged[target.name] = total
    return purged


# Each domain lists its own jobs in its module (a JOBS list); this is the one place that knows them all.
DOMAIN_JOB_MODULES = ("app.services.exposure_jobs", "app.services.dispatch")
CORE_JOBS = (
    Job("auto_checkout", _auto_checkout, "interval", {"minutes": 1}),
    Job("purge_retention", _purge, "interval", {"hours": 1}),
)


def all_jobs() -> dict[str, Job]:
    """Every job by name. Domain modules are imported here, not at import time of this module, so
    they can import Job and unit_of_work from it without a cycle."""
    import importlib

    jobs = {job.name: job for job in CORE_JOBS}
    for module_name in DOMAIN_JOB_MODULES:
        for job in importlib.import_module(module_name).JOBS:
            jobs[job.name] = job
    return jobs


def run_job(app: Flask, name: str) -> dict[str, Any]:
    """Run one job in its own app context; failures are logged and counted, never propagated to the scheduler."""
    job = all_jobs()[name]
    started = time.perf_counter()
    with app.app_context():
        try:
            result = job.func(app)
        except Exception:
            JOB_RUNS.labels(name, "error").inc()
            log.exception("job failed", extra={"job": name})
            raise
        finally:
            db.session.remove()
    JOB_RUNS.labels(name, "ok").inc()
    log.info("job done", extra={"job": name, "seconds": round(time.perf_counter() - started, 3), **result})
    return result


class LeaderLock:
    """Exactly one active jobs process per database.

    PostgreSQL: a session-level advisory lock held on a connection kept open for the process's life;
    if the process dies, the server drops the connection and the lock with it. SQLite: an exclusive
    flock on a file beside the database, released by the kernel when the process dies.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._conn: Connection | None = None
        self._fd: int | None = None

    @property
    def is_postgres(self) -> bool:
        return self.app.config["DATABASE_URL"].startswith("postgresql")

    def try_acquire(self) -> bool:
        if self.is_postgres:
            with self.app.app_context():
                conn = db.engine.connect()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_ID}).scalar())
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        path = self.app.config["JOBS_LOCK_PATH"] or self._default_lock_path()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _default_lock_path(self) -> str:
        url = self.app.config["DATABASE_URL"]
        return url.removeprefix("sqlite:///") + ".jobs.lock"

    def still_held(self) -> bool:
        """False when the PostgreSQL connection that holds the lock has gone away."""
        if self._conn is None:
            return self._fd is not None
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except Exception:
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_ID})
                self._conn.commit()
                self._conn.close()
            except Exception:
                log.warning("could not release the jobs lock cleanly; the server drops it with the connection")
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_scheduler(app: Flask, poll_seconds: float = 1.0, lock_check_seconds: int = 5) -> None:
    """Wait for the leader lock, then run every job on its schedule until stopped."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    lock = LeaderLock(app)
    announced = False
    while not lock.try_acquire():
        if not announced:
            log.info("jobs standby: another jobs process is active; waiting to take over")
            announced = True
        time.sleep(poll_seconds)
    log.info("jobs active: this process runs the scheduled jobs", extra={"pid": os.getpid()})

    scheduler = BlockingScheduler(timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True})
    for job in all_jobs().values():
        scheduler.add_job(
            _safe_run,
            job.trigger,
            args=[app, job.name],
            id=job.name,
            name=job.name,
            replace_existing=True,
            next_run_time=utcnow(),
            **job.trigger_args,
        )

    def check_lock() -> None:
        if not lock.still_held():
            log.error("jobs lock lost (database connection gone); stopping so a standby can take over")
            scheduler.shutdown(wait=False)

    scheduler.add_job(check_lock, "interval", seconds=lock_check_seconds, id="_leader_lock_check")
    try:
        scheduler.start()
    finally:
        lock.release()


def _safe_run(app: Flask, name: str) -> None:
    # A failure is already logged and counted in run_job; the scheduler must keep going.
    with suppress(Exception):
        run_job(app, name)
