"""Rate-limit counters in the app's own database (RATELIMIT_STORAGE_URI=database://), so that every
worker and every node counts against one limit and a restart forgets nothing; no Redis is needed.

A `limits` storage for the fixed-window strategy (Flask-Limiter's default): one row per key with its
hits and the end of its window, incremented by one atomic upsert. It writes through its own engine,
outside the request's transaction, so a hit counts even when the request fails and rolls back. On
PostgreSQL that is the app's database (table rate_limit_counters, made by the migrations); an SQLite
database gets a side file beside it (checkin.sqlite3 -> checkin.rate-limits.sqlite3), because a second
connection writing to the same file would wait for the request's own write lock.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from pathlib import Path
from typing import Any

from limits.storage import Storage
from sqlalchemy import Engine, case, create_engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.models import RateLimitCounter

SCHEME = "database://"
PURGE_EVERY = 500  # increments per process between deletions of expired windows

_table = RateLimitCounter.__table__
_c = _table.c


def _now() -> float:
    return time.time()


def side_file_url(database_url: str) -> str:
    """Where an SQLite database keeps its counters; the same URL for PostgreSQL."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite"):
        return database_url
    if not url.database or url.database == ":memory:":
        return "sqlite://"  # an in-memory database: counters in memory too, per process
    path = Path(url.database)
    return str(url.set(database=str(path.with_name(f"{path.stem}.rate-limits{path.suffix or '.sqlite3'}"))))


class DatabaseStorage(Storage):
    STORAGE_SCHEME = ["database"]  # noqa: RUF012 (limits reads the class attribute)

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        database_url = options.pop("database_url", "")
        key_secret = options.pop("key_secret", "")
        super().__init__(uri, wrap_exceptions, **options)
        if not database_url or not key_secret:
            raise ValueError("database:// needs the database_url and key_secret storage options (create_app sets them)")
        self._secret = str(key_secret).encode()
        self._url = side_file_url(database_url)
        self._engine: Engine | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._increments = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def _db(self) -> Engine:
        # One engine per process: made on first use, again after a fork (gunicorn's workers).
        if self._engine is None or self._pid != os.getpid():
            with self._lock:
                if self._engine is None or self._pid != os.getpid():
                    if self._url.startswith("sqlite"):
                        engine = create_engine(self._url, connect_args={"timeout": 5}, hide_parameters=True)
                        _table.create(engine, checkfirst=True)  # a side file: no migrations there
                    else:
                        engine = create_engine(self._url, pool_size=2, max_overflow=8, hide_parameters=True)
                    self._engine, self._pid = engine, os.getpid()
        return self._engine

    def close(self) -> None:
        """Close this process's connections (the counters stay)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _key(self, key: str) -> str:
        # A key names the address or device it counts ("LIMITER/203.0.113.7/visitor-code-address/..."):
        # only its keyed hash is stored, so the table holds no address, and a key of any length fits.
        return hmac.digest(self._secret, key.encode(), "sha256").hex()

    def incr(self, key: str, expiry: int | float, amount: int = 1) -> int:
        """The key's hits after adding `amount`; a window that has ended starts again from `amount`."""
        now = _now()
        engine = self._db()
        insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(_table)
        ended = _c.expires_at <= now
        statement = (
            insert.values(key=self._key(key), hits=amount, expires_at=now + expiry)
            .on_conflict_do_update(
                index_elements=[_c.key],
                set_={
                    "hits": case((ended, amount), else_=_c.hits + amount),
                    "expires_at": case((ended, now + expiry), else_=_c.expires_at),
                },
            )
            .returning(_c.hits)
        )
        with engine.begin() as connection:
            hits = int(connection.execute(statement).scalar_one())
            self._increments += 1
            if self._increments % PURGE_EVERY == 0:
                connection.execute(delete(_table).where(_c.expires_at <= now))
        return hits

    def get(self, key: str) -> int:
        with self._db().connect() as connection:
            hits = connection.scalar(select(_c.hits).where(_c.key == self._key(key), _c.expires_at > _now()))
        return int(hits or 0)

    def get_expiry(self, key: str) -> float:
        with self._db().connect() as connection:
            expires_at = connection.scalar(select(_c.expires_at).where(_c.key == self._key(key)))
        return float(expires_at) if expires_at is not None else _now()

    def check(self) -> bool:
        try:
            with self._db().connect() as connection:
                connection.scalar(select(_c.hits).limit(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._db().begin() as connection:
            return int(connection.execute(delete(_table)).rowcount)

    def clear(self, key: str) -> None:
        with self._db().begin() as connection:
            connection.execute(delete(_table).where(_c.key == self._key(key)))
