"""The jobs process: run-once from the CLI, and exactly one active scheduler with a hot standby."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskCliRunner

from app.models import utcnow
from tests import factories
from tests.conftest import TEST_KEYS, reset_database

CHECKIN = str(Path(sys.executable).with_name("checkin"))


def test_run_once_closes_overdue_visits(runner: FlaskCliRunner, db: Any) -> None:
    venue = factories.venue()
    visit = factories.checkin(factories.person(), venue, utcnow() - timedelta(hours=3), minutes=None)
    db.session.commit()  # the job runs in its own unit of work
    result = runner.invoke(args=["jobs", "run-once", "auto_checkout"])
    assert result.exit_code == 0, result.output
    assert "closed=1" in result.output
    db.session.refresh(visit)
    assert visit.checked_out_at is not None


def test_the_job_goes_on_after_a_batch_in_which_a_visit_changed_meanwhile(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full batch read means more visits may be due, even when some of the batch changed between the
    read and the update and fewer than a batch were closed (tests/app/services/test_visits.py shows
    the service's side on a real database: both visits read, one closed)."""
    from contextlib import nullcontext

    from app import jobs
    from app.services import visits

    runs = iter([visits.OverdueRun(2, 1), visits.OverdueRun(2, 2), visits.OverdueRun(1, 1)])
    calls = []

    def close_overdue_visits(now: Any, batch_size: int) -> visits.OverdueRun:
        calls.append(batch_size)
        return next(runs)

    monkeypatch.setattr(visits, "close_overdue_visits", close_overdue_visits)
    monkeypatch.setattr(jobs, "unit_of_work", nullcontext)
    monkeypatch.setitem(app.config, "AUTO_CHECKOUT_BATCH_SIZE", 2)
    assert jobs._auto_checkout(app) == {"closed": 4}
    assert calls == [2, 2, 2]


def test_run_once_rejects_an_unknown_job(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["jobs", "run-once", "make_coffee"])
    assert result.exit_code == 2
    assert "make_coffee" in result.output


class JobsProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("w")
        self.proc = subprocess.Popen([CHECKIN, "jobs", "run"], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def messages(self) -> list[str]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line)["msg"])
            except (ValueError, KeyError):
                continue
        return out

    def is_active(self) -> bool:
        return any(m.startswith("jobs active") for m in self.messages())

    def is_standby(self) -> bool:
        return any(m.startswith("jobs standby") for m in self.messages())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()


def _wait(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def jobs_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        reset_database(database_url)
    env = {
        **os.environ,
        **TEST_KEYS,
        "APP_ENV": "testing",
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "JOBS_LOCK_PATH": str(tmp_path / "jobs.lock"),
    }
    if database_url.startswith("sqlite"):
        subprocess.run([CHECKIN, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    return env


def test_second_jobs_process_waits_and_takes_over_when_the_first_dies(jobs_env: dict[str, str], tmp_path: Path) -> None:
    first = JobsProcess(jobs_env, tmp_path / "first.log")
    second = None
    try:
        assert _wait(first.is_active, 30), first.log_path.read_text()
        second = JobsProcess(jobs_env, tmp_path / "second.log")
        assert _wait(second.is_standby, 30), second.log_path.read_text()
        time.sleep(1.5)  # several poll rounds: still only one active
        assert not second.is_active()
        assert any(m == "job done" for m in first.messages())
        assert not any(m == "job done" for m in second.messages())

        first.proc.send_signal(signal.SIGKILL)  # no clean release: the lock must free itself
        first.proc.wait(timeout=10)
        started = time.monotonic()
        assert _wait(second.is_active, 15), second.log_path.read_text()
        assert time.monotonic() - started < 10
        assert _wait(lambda: "job done" in second.messages(), 15)
    finally:
        first.stop()
        if second is not None:
            second.stop()
