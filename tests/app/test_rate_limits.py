"""RATELIMIT_STORAGE_URI=database://: every worker and process counts against one limit, each hit is
counted exactly once, and a window that ends starts again. Run on the test database (SQLite or
PostgreSQL), and end to end through gunicorn with two workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select

from app import create_app, rate_limits
from app.models import RateLimitCounter
from app.rate_limits import DatabaseStorage, side_file_url
from tests.conftest import reset_database, settings_for
from tests.support.live import live_database_url


@pytest.fixture
def storage(app: Flask) -> Iterator[DatabaseStorage]:
    # The session's test database, migrated by `app` (PostgreSQL keeps the counters in it).
    made = DatabaseStorage(database_url=app.config["DATABASE_URL"], key_secret="test")
    yield made
    made.reset()
    made.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_800_000_000.0]
    monkeypatch.setattr(rate_limits, "_now", lambda: now[0])
    return now


def test_hits_are_counted_per_key_until_the_window_ends(storage: DatabaseStorage, clock: list[float]) -> None:
    key, other = f"login/{uuid.uuid4()}", f"login/{uuid.uuid4()}"
    assert storage.get(key) == 0
    assert [storage.incr(key, 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr(key, 60, amount=2) == 5
    assert storage.incr(other, 60) == 1
    assert storage.get(key) == 5 and storage.get_expiry(key) == clock[0] + 60

    clock[0] += 59.5  # still inside the window: it does not move
    assert storage.incr(key, 60) == 6 and storage.get_expiry(key) == clock[0] - 59.5 + 60
    clock[0] += 0.5  # the window's end: a new one begins
    assert storage.get(key) == 0
    assert storage.incr(key, 60) == 1 and storage.get_expiry(key) == clock[0] + 60
    assert storage.get(other) == 0 and storage.incr(other, 60) == 1

    storage.clear(key)
    assert storage.get(key) == 0 and storage.get(other) == 1
    assert storage.reset() == 1
    assert storage.get(other) == 0


def test_keys_are_stored_only_as_keyed_hashes(app: Flask, storage: DatabaseStorage) -> None:
    address_key = "LIMITER/203.0.113.7/visitor-code-address/20/1/hour"
    long_key = "device/" + "x" * 600
    assert storage.incr(address_key, 60) == 1 and storage.incr(long_key, 60) == 1 and storage.incr(long_key, 60) == 2
    assert storage.get(long_key) == 2 and storage.get(long_key[:-1] + "y") == 0
    with storage._db().connect() as connection:
        stored = connection.scalars(select(RateLimitCounter.key)).all()
    assert len(stored) == 2 and not any("203.0.113.7" in key or "device/" in key for key in stored)
    same_secret = DatabaseStorage(database_url=app.config["DATABASE_URL"], key_secret="test")
    other_secret = DatabaseStorage(database_url=app.config["DATABASE_URL"], key_secret="another")
    assert same_secret.get(address_key) == 1 and other_secret.get(address_key) == 0  # the hash needs the secret
    same_secret.close()
    other_secret.close()


def test_expired_windows_are_deleted_as_hits_go_on(
    storage: DatabaseStorage, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limits, "PURGE_EVERY", 3)
    storage.incr("old/1", 10)
    storage.incr("old/2", 10)
    clock[0] += 11
    storage.incr("fresh", 10)  # the third increment purges the two ended windows
    engine = storage._db()
    with engine.connect() as connection:
        keys = connection.scalars(select(RateLimitCounter.key)).all()
    assert keys == [storage._key("fresh")]


def test_every_worker_counts_against_one_limit_and_no_hit_is_lost(app: Flask, storage: DatabaseStorage) -> None:
    # Four storages stand for four worker processes: each has its own engine and connections.
    workers = [DatabaseStorage(database_url=app.config["DATABASE_URL"], key_secret="test") for _ in range(4)]
    key = f"code/{uuid.uuid4()}"
    seen: list[int] = []
    lock = threading.Lock()

    def hit(worker: DatabaseStorage) -> None:
        for _ in range(25):
            count = worker.incr(key, 3600)
            with lock:
                seen.append(count)

    threads = [threading.Thread(target=hit, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert sorted(seen) == list(range(1, 101))  # each hit counted once, no count handed out twice
        assert all(w.get(key) == 100 for w in workers)
    finally:
        for w in workers:
            w.close()


def test_sqlite_counts_in_a_side_file_and_postgresql_in_its_database(app: Flask, storage: DatabaseStorage) -> None:
    assert side_file_url("sqlite:////srv/checkin/instance/checkin.sqlite3") == (
        "sqlite:////srv/checkin/instance/checkin.rate-limits.sqlite3"
    )
    assert side_file_url("sqlite://") == "sqlite://"
    assert side_file_url("postgresql+psycopg://app@db/checkin") == "postgresql+psycopg://app@db/checkin"
    storage.incr("somewhere", 60)
    main = create_engine(app.config["DATABASE_URL"])
    try:
        with main.connect() as connection:
            in_main = connection.scalar(select(func.count()).select_from(RateLimitCounter))
    finally:
        main.dispose()
    # SQLite: a second writer on the request's own file would wait for the request's write lock.
    assert in_main == (0 if app.config["DATABASE_URL"].startswith("sqlite") else 1)


def test_an_unreachable_database_fails_the_health_check() -> None:
    unreachable = DatabaseStorage(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none", key_secret="test")
    assert unreachable.check() is False
    unreachable.close()
    with pytest.raises(ValueError, match="database_url and key_secret"):
        DatabaseStorage(database_url="sqlite://")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_login_limit_holds_across_two_gunicorn_workers(database_url: str, tmp_path: Path) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    url = live_database_url(database_url, str(tmp_path), "rate_limits")
    reset_database(url)
    settings = settings_for(url, RATELIMIT_STORAGE_URI="database://", LOG_LEVEL="WARNING")
    migrated = create_app(settings)
    with migrated.app_context():
        upgrade()
        db.engine.dispose()
    port = _free_port()
    env = {**os.environ, **{k: str(v) for k, v in settings.items()}}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "--workers", "2", "--bind", f"127.0.0.1:{port}", "app.wsgi:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        body = {"email": "nobody@romashka.example", "password": "wrong password"}
        statuses = []
        for _ in range(14):
            # A new connection each time, so the two workers share the requests.
            with httpx.Client(timeout=10) as client:
                statuses.append(client.post(f"{base}/api/v1/operator/session", json=body).status_code)
        assert statuses == [401] * 10 + [429] * 4
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_production_with_per_process_counters_says_so_at_start(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_app(settings_for(database_url, APP_ENV="production"))
    assert "RATELIMIT_STORAGE_URI=memory:// counts per process" in capsys.readouterr().err
    create_app(settings_for(database_url))  # testing: memory:// is what the suite wants, and nothing is said
    assert "counts per process" not in capsys.readouterr().err
