"""Durable local check-in queue in SQLite: every check-in is on disk before any network call."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

METHODS = frozenset({"kiosk_scanner", "ble"})
FINAL_STATUSES = frozenset({"accepted", "duplicate", "rejected"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    method TEXT NOT NULL,
    token TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    settled_at TEXT
);
CREATE INDEX IF NOT EXISTS checkins_pending ON checkins (status, id);
"""


class KioskQueueError(Exception):
    """The local queue database cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class QueuedCheckin:
    client_id: str
    method: str
    token: str
    observed_at: datetime


class LocalQueue:
    """One SQLite file; WAL with synchronous=FULL so a committed check-in survives power loss."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL would be faster, but in WAL mode it can lose the last commits on power loss,
            # and a kiosk is unplugged at closing time.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise KioskQueueError(f"cannot open queue {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, method: str, token: str, observed_at: datetime, client_id: str | None = None) -> str:
        """Store one check-in and commit; returns its client id (uuid4), the server's dedup key."""
        return self.enqueue_many([(method, token, observed_at)], [client_id] if client_id else None)[0]

    def enqueue_many(
        self, items: Iterable[tuple[str, str, datetime]], client_ids: list[str] | None = None
    ) -> list[str]:
        """Store several check-ins in one transaction (all or none)."""
        rows = []
        for n, (method, token, observed_at) in enumerate(items):
            if method not in METHODS:
                raise ValueError(f"unknown check-in method {method!r}")
            if observed_at.tzinfo is None:
                raise ValueError("observed_at must be timezone-aware")
            cid = client_ids[n] if client_ids else str(uuid.uuid4())
            rows.append((cid, method, token, observed_at.isoformat()))
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO checkins (client_id, method, token, observed_at) VALUES (?, ?, ?, ?)", rows
                )
        except sqlite3.Error as exc:
            raise KioskQueueError(f"cannot store check-in: {exc}") from exc
        return [r[0] for r in rows]

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def pending(self, limit: int) -> list[QueuedCheckin]:
        """Oldest unsettled check-ins first, so a long outage drains in observation order."""
        cur = self._db.execute(
            "SELECT client_id, method, token, observed_at FROM checkins WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [QueuedCheckin(c, m, t, datetime.fromisoformat(o)) for c, m, t, o in cur.fetchall()]

    def mark_attempted(self, client_ids: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE checkins SET attempts = attempts + 1 WHERE client_id = ?", [(c,) for c in client_ids]
            )

    def settle(self, results: Mapping[str, tuple[str, str | None]], now: datetime) -> int:
        """Record the server's verdicts; unknown statuses leave the item pending for a retry."""
        rows = [
            (status, reason, now.isoformat(), cid)
            for cid, (status, reason) in results.items()
            if status in FINAL_STATUSES
        ]
        with self._transaction():
            self._db.executemany(
                "UPDATE checkins SET status = ?, reason = ?, settled_at = ? WHERE client_id = ? AND status = 'pending'",
                rows,
            )
        return len(rows)

    def count(self, status: str = "pending") -> int:
        return int(self._db.execute("SELECT count(*) FROM checkins WHERE status = ?", (status,)).fetchone()[0])

    def purge_settled(self, now: datetime, keep: timedelta) -> int:
        """Drop settled rows older than `keep`; pending rows are never purged."""
        with self._transaction():
            cur = self._db.execute(
                "DELETE FROM checkins WHERE status != 'pending' AND settled_at < ?", ((now - keep).isoformat(),)
            )
        return cur.rowcount


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
